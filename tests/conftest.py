"""Shared fixtures: real gateway and fake-upstream processes on free ports."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited early:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(url, timeout=1, verify=False).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up:\n{log.read_text(errors='replace')}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process we started, by its PID: SIGTERM, then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    keys: dict[str, str] = field(default_factory=dict)
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def key(self) -> str:
        return self.keys["default"]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def logged(self, text: str, expected: int) -> int:
        """How often `text` is in the log, once it is there `expected` times or 10 s have
        gone by: a thread of its own writes the log, a little after what it tells of."""
        deadline = time.monotonic() + 10
        while (count := self.output().count(text)) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return count


def start_process(
    args: list[str],
    workdir: Path,
    name: str,
    health: str,
    env: dict[str, str] | None = None,
    scheme: str = "http",
    port: int | None = None,
) -> Service:
    port = port or free_port()
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*args, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    service = Service(process, port, log, scheme=scheme)
    try:
        wait_http(service.url + health, process, log)
    except Exception:
        stop(process)
        raise
    return service


def start_gateway(
    workdir: Path,
    config: dict | None = None,
    name: str = "gateway",
    env: dict[str, str] | None = None,
    port: int | None = None,
    args: tuple[str, ...] = (),
    module: str = "savegate",
) -> Service:
    """`module`: what runs `savegate serve`, savegate's own CLI or a test's wrapper of it."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", module, "serve", "--data-dir", str(workdir / "data"), *args]
    if config is not None:
        config_file = workdir / f"{name}.yaml"
        config_file.write_text(yaml.safe_dump(config))
        argv += ["--config", str(config_file)]
    service = start_process(argv, workdir, name, "/health", env, port=port)
    service.keys = dict(re.findall(r"^\s+(\w+) key:\s+(sk-savegate-\w+)$", service.output(), re.M))
    return service


def self_signed(workdir: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with openssl for this test."""
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def start_fake_upstream(workdir: Path, *options: str, tls: bool = False) -> Service:
    """`options` go to the fake's command line (see `tests.fakes.upstream.main`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return start_process(
        [sys.executable, "-m", "tests.fakes.upstream", *options],
        workdir,
        "fake-upstream",
        "/_log",
        scheme="https" if tls else "http",
    )


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def model_pid(data_dir: Path) -> int | None:
    """The embedded model process of a data directory (it writes its PID in its lock)."""
    try:
        text = (data_dir / "local-model.lock").read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text and alive(int(text)) else None


def sidecar_pid(service: Service, count: int = 1) -> int:
    """The pid of the gateway's sidecar process, once its log named `count` of them."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pids = re.findall(r"sidecar process pid (\d+)", service.output())
        if len(pids) >= count:
            return int(pids[count - 1])
        time.sleep(0.05)
    raise AssertionError(f"no sidecar process {count} in the log:\n{service.output()}")


def gone(pid: int, timeout: float) -> bool:
    """Whether `pid` ended within `timeout` (a zombie that no one reaped has ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def stop_model(data_dir: Path, wait: float = 10) -> bool:
    """Once its gateways are stopped: wait for the model process to end by itself (True),
    else stop it by its PID (False)."""
    pid = model_pid(data_dir)
    deadline = time.monotonic() + wait
    while pid is not None and alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid is None or not alive(pid):
        return True
    for signum, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
        deadline = time.monotonic() + grace
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not alive(pid):
            break
    return False


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The gateway on the embedded default: no config, SQLite, the local model."""
    workdir = tmp_path_factory.mktemp("embedded")
    service = start_gateway(workdir)
    yield service
    stop(service.process)
    stop_model(workdir / "data")


@pytest.fixture(scope="session")
def fake_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_fake_upstream(tmp_path_factory.mktemp("fake-upstream"))
    yield service
    stop(service.process)


@pytest.fixture(scope="session")
def relay_gateway(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: Service
) -> Iterator[Service]:
    """The gateway in front of the fake upstream, which serves every model name."""
    os.environ.setdefault("FAKE_UPSTREAM_KEY", "sk-fake-upstream-key")
    config = {
        "local": {"enabled": False},
        "server": {"max_body_bytes": 1024 * 1024},
        "providers": {
            "fake": {
                "base_url": fake_upstream.base_url,
                "api_key_env": "FAKE_UPSTREAM_KEY",
                "models": ["*"],
            }
        },
    }
    service = start_gateway(tmp_path_factory.mktemp("relay"), config)
    yield service
    stop(service.process)


@pytest.fixture(scope="session")
def native_gateway(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: Service
) -> Iterator[Service]:
    """The gateway passing `/v1/responses` through (`responses: native`) for `resp-*` and
    `codex-model` (renamed upstream to `resp-text`); `text-*` through chat, same fake."""
    os.environ.setdefault("FAKE_UPSTREAM_KEY", "sk-fake-upstream-key")
    upstream = {"base_url": fake_upstream.base_url, "api_key_env": "FAKE_UPSTREAM_KEY"}
    config = {
        "local": {"enabled": False},
        "usage": {"flush_seconds": 0.1},
        "providers": {
            "native": {
                **upstream,
                "responses": "native",
                "models": ["resp-*", {"name": "codex-model", "upstream": "resp-text"}],
            },
            "chat": {**upstream, "models": ["text-*"]},
        },
    }
    service = start_gateway(tmp_path_factory.mktemp("native"), config)
    yield service
    stop(service.process)
