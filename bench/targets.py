"""Start the upstreams and every target on free ports; each target knows its routes.

Routes by kind of request: `json` (non-stream), `stream` (50-chunk SSE), `idle` (a stream
the slow upstream keeps silent after its first event) and `burst` (a stream held 5 s, for
the 2,000-concurrent-streams test). Gateways select the upstream by model name.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bench import nginx_conf
from bench.client import Route
from bench.fixtures import request_body
from bench.install import LITELLM_VENV, PORTKEY_START
from bench.procs import Proc, Procs, free_port, wait_tcp

MODES = ("json", "stream", "idle", "burst")
MODELS = {mode: f"bench-{mode}" for mode in MODES}
IDLE_HOLD_S = 300
BURST_HOLD_S = 20  # longer than a gateway takes to open 2,000 streams
MOCK_KEY = "sk-mock-upstream"
TREE = Path(__file__).resolve().parents[1]  # the sources a run measures by default


@dataclass(frozen=True)
class Upstreams:
    mock_port: int
    slow_port: int

    def prefix(self, mode: str) -> str:
        """Upstream base URL for a kind of request (what a gateway is configured with)."""
        return {
            "json": f"http://127.0.0.1:{self.mock_port}/json/v1",
            "stream": f"http://127.0.0.1:{self.mock_port}/sse/v1",
            "idle": f"http://127.0.0.1:{self.slow_port}/hold/{IDLE_HOLD_S}/v1",
            "burst": f"http://127.0.0.1:{self.slow_port}/hold/{BURST_HOLD_S}/v1",
        }[mode]

    def path(self, mode: str) -> str:
        return urlsplit(self.prefix(mode)).path + "/chat/completions"


@dataclass
class Target:
    name: str
    label: str
    proc: Proc
    routes: dict[str, Route] = field(default_factory=dict)


def _body(mode: str) -> bytes:
    return request_body(MODELS[mode], stream=mode != "json")


def start_mock(procs: Procs, work: Path, json_body: bytes, sse: bytes) -> tuple[Proc, int]:
    port = free_port()
    conf = nginx_conf.mock_upstream(work, port, json_body, sse)
    proc = procs.start("mock-nginx", nginx_conf.argv(conf, work), work / "mock.log")
    wait_tcp(port, proc)
    return proc, port


def start_slow(procs: Procs, work: Path, python: str, sse_file: Path) -> tuple[Proc, int]:
    port = free_port()
    proc = procs.start(
        "slow-upstream",
        [python, "-m", "bench.slow_upstream", str(port), str(sse_file)],
        work / "slow.log",
        cwd=Path(__file__).resolve().parent.parent,
    )
    wait_tcp(port, proc)
    return proc, port


def direct(mock: Proc, ups: Upstreams) -> Target:
    routes = {
        mode: Route(ups.mock_port, ups.path(mode), {}, _body(mode)) for mode in ("json", "stream")
    }
    return Target("direct", "direct upstream (nginx static)", mock, routes)


def start_nginx_proxy(procs: Procs, work: Path, ups: Upstreams) -> Target:
    port = free_port()
    conf = nginx_conf.reverse_proxy(work, port, ups.mock_port, ups.slow_port)
    proc = procs.start("nginx-proxy", nginx_conf.argv(conf, work), work / "proxy.log")
    wait_tcp(port, proc)
    routes = {mode: Route(port, ups.path(mode), {}, _body(mode)) for mode in MODES}
    return Target("nginx", "nginx reverse proxy", proc, routes)


def _gateway_routes(port: int, headers: dict[str, str]) -> dict[str, Route]:
    return {mode: Route(port, "/v1/chat/completions", headers, _body(mode)) for mode in MODES}


def start_savegate(
    procs: Procs,
    work: Path,
    ups: Upstreams,
    savegate: str,
    name: str = "savegate",
    source: Path | None = None,
    workers: int = 1,
    cache: bool = False,
    semantic: bool = False,
    extra: dict[str, object] | None = None,
) -> Target:
    """SaveGate from this bench's own tree, or (`source`) the tree of another revision,
    on the same virtualenv (whose editable install may point at yet another tree), for
    a base-against-new comparison in one run; with `workers` processes
    and `extra` configuration sections. With `cache`, also `json-hit` and `stream-hit`
    routes: the same requests under model names the response cache serves
    (`bench-json-hit`, `bench-stream-hit`); with `semantic`, `json-sem` and `stream-sem`
    routes for the semantic cache (its embeddings by the embedded model, which is then
    enabled under its own name)."""
    port = free_port()
    providers = {
        mode: {"base_url": ups.prefix(mode), "api_key_env": "MOCK_KEY", "models": [MODELS[mode]]}
        for mode in MODES
    }
    for mode in ("idle", "burst"):  # above the default pool of 1,000 upstream connections
        providers[mode]["max_connections"] = 4096
    settings: dict[str, object] = {"local": {"enabled": False}, "providers": providers}
    if cache:
        for mode in ("json", "stream"):
            providers[mode]["models"].append(f"{MODELS[mode]}-hit")
        settings["cache"] = {"models": ["bench-*-hit"], "cache_all": True}
    if semantic:
        for mode in ("json", "stream"):
            providers[mode]["models"].append(f"{MODELS[mode]}-sem")
        cache_settings = settings.setdefault("cache", {"cache_all": True})
        assert isinstance(cache_settings, dict)
        cache_settings["semantic"] = {"groups": ["bench-*-sem"], "threshold": 0.9}
        settings["local"] = {"enabled": True}
    config = work / f"{name}.yaml"
    config.write_text(json.dumps({**settings, **(extra or {})}))
    env = {"PYTHONPATH": str((source or TREE) / "src")}
    proc, key = _savegate(procs, work / name, savegate, port, config, env, workers)
    label = "SaveGate" if source is None else f"SaveGate base ({source.name})"
    if workers > 1:
        label += f", {workers} workers"
    headers = {"Authorization": f"Bearer {key}"}
    routes = _gateway_routes(port, headers)
    if cache:
        for mode in ("json", "stream"):
            body = request_body(f"{MODELS[mode]}-hit", stream=mode != "json")
            routes[f"{mode}-hit"] = Route(port, "/v1/chat/completions", headers, body)
    if semantic:
        for mode in ("json", "stream"):
            body = request_body(f"{MODELS[mode]}-sem", stream=mode != "json")
            routes[f"{mode}-sem"] = Route(port, "/v1/chat/completions", headers, body)
    return Target(name, label, proc, routes)


def _savegate(
    procs: Procs,
    data: Path,
    savegate: str,
    port: int,
    config: Path,
    env: dict[str, str] | None = None,
    workers: int = 1,
) -> tuple[Proc, str]:
    shutil.rmtree(data, ignore_errors=True)  # a fresh store prints fresh keys
    data.mkdir(parents=True)
    argv = [
        savegate,
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--config",
        str(config),
        *(["--workers", str(workers)] if workers > 1 else []),
    ]
    proc = procs.start(
        data.name, argv, data / "serve.log", env={"MOCK_KEY": MOCK_KEY, **(env or {})}
    )
    wait_tcp(port, proc, timeout=180)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = re.search(r"default key:\s+(\S+)", proc.log.read_text(errors="replace"))
        if found:
            return proc, found.group(1)
        time.sleep(0.1)
    raise RuntimeError(f"no key in SaveGate's banner:\n{proc.log_tail()}")


def start_savegate_embedded(procs: Procs, work: Path, savegate: str) -> tuple[Proc, Route]:
    port = free_port()
    config = work / "savegate-embedded.yaml"
    config.write_text(json.dumps({"providers": {}}))
    proc, key = _savegate(procs, work / "savegate-embedded", savegate, port, config)
    return proc, Route(port, "/v1/chat/completions", {"Authorization": f"Bearer {key}"}, b"")


def start_litellm(procs: Procs, work: Path, ups: Upstreams) -> Target:
    port = free_port()
    model_list = [
        {
            "model_name": MODELS[mode],
            "litellm_params": {
                "model": f"openai/{MODELS[mode]}",
                "api_base": ups.prefix(mode),
                "api_key": MOCK_KEY,
            },
        }
        for mode in MODES
    ]
    config = work / "litellm.yaml"
    master = "sk-" + secrets.token_hex(24)  # LiteLLM refuses to start without one
    config.write_text(
        json.dumps(
            {
                "model_list": model_list,
                "litellm_settings": {"telemetry": False},
                "general_settings": {"master_key": master},
            }
        )
    )
    argv = [
        str(LITELLM_VENV / "bin" / "litellm"),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "DISABLE_ADMIN_UI": "True",
        "LITELLM_MODE": "PRODUCTION",
    }
    proc = procs.start("litellm", argv, work / "litellm.log", env=env)
    wait_tcp(port, proc, timeout=240)
    return Target(
        "litellm",
        "LiteLLM proxy",
        proc,
        _gateway_routes(port, {"Authorization": f"Bearer {master}"}),
    )


def start_portkey(procs: Procs, work: Path, ups: Upstreams) -> Target:
    port = free_port()
    argv = ["node", str(PORTKEY_START), f"--port={port}", "--headless"]
    proc = procs.start("portkey", argv, work / "portkey.log", env={"NODE_ENV": "production"})
    wait_tcp(port, proc, timeout=120)
    routes = {
        mode: Route(
            port,
            "/v1/chat/completions",
            {
                "Authorization": f"Bearer {MOCK_KEY}",
                "x-portkey-provider": "openai",
                "x-portkey-custom-host": ups.prefix(mode),
            },
            _body(mode),
        )
        for mode in MODES
    }
    return Target("portkey", "Portkey gateway", proc, routes)
