"""Running the examples: Node's dependencies, relay servers on free ports, and the browser."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Service, free_port, stop, wait_http
from tests.web.browser import browser, page  # noqa: F401  (fixtures: one shared Chromium)

EXAMPLES = ROOT / "examples"
NODE = EXAMPLES / "node"
RELAYS = {
    "fastapi": [sys.executable, str(EXAMPLES / "python" / "fastapi_relay.py")],
    "express": ["node", str(NODE / "express_relay.mjs")],
}


def example_env(gateway: Service, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "SAVEGATE_API_KEY": gateway.key,
        "SAVEGATE_BASE_URL": gateway.base_url,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


@pytest.fixture(scope="session")
def node_modules() -> Path:
    folder = NODE / "node_modules"
    if not (folder / "openai").is_dir() or not (folder / "express").is_dir():
        pytest.fail("examples/node has no node_modules: `make test` installs them (npm ci)")
    return folder


def start_relay(name: str, gateway: Service, workdir: Path, key: str | None = None) -> Service:
    port = free_port()
    log = workdir / f"{name}-relay.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            RELAYS[name],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=example_env(gateway, PORT=str(port), SAVEGATE_API_KEY=key or gateway.key),
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/", process, log, timeout=60)
    except Exception:
        stop(process)
        raise
    return Service(process, port, log)


@pytest.fixture(scope="module", params=sorted(RELAYS))
def relay(
    request: pytest.FixtureRequest,
    gateway: Service,
    node_modules: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    """Each SSE relay of the guide, in front of the gateway on the embedded model."""
    service = start_relay(request.param, gateway, tmp_path_factory.mktemp(request.param))
    yield service
    stop(service.process)
