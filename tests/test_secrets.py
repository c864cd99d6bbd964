"""The upstream's key never leaves the gateway, even behind a proxy that echoes the
credentials it received in every place it can: JSON and text error bodies, error fields,
in-stream errors, response headers and answers. Checked in every byte a client receives,
in the gateway's log at DEBUG (SQL parameters included) and in every usage row."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.conftest import Service, start_gateway, stop
from tests.stores import database, query

KEY = "sk-echo-" + secrets.token_hex(16)
# The key's random part: a leak of any slice of the key would show it.
SECRET_PART = KEY[-24:]
ERRORS = ["echo-400", "echo-401", "echo-429", "echo-500", "echo-503", "echo-text-500"]
MESSAGES = [{"role": "user", "content": "hello"}]


def _bodies(model: str, stream: bool) -> dict[str, dict]:
    """A request body per endpoint for `model`."""
    bodies = {
        "/v1/chat/completions": {"model": model, "messages": MESSAGES, "stream": stream},
        "/v1/responses": {"model": model, "input": "hello", "stream": stream},
        "/v1/messages": {
            "model": model,
            "max_tokens": 50,
            "messages": MESSAGES,
            "stream": stream,
        },
    }
    if model in ERRORS and not stream:
        bodies["/v1/completions"] = {"model": model, "prompt": "hello"}
        bodies["/v1/embeddings"] = {"model": model, "input": "hello"}
    return bodies


def _cases() -> list[tuple[str, str, bool]]:
    cases = []
    for model in [*ERRORS, "echo-ok", "echo-after-2"]:
        for stream in (False, True):
            if model == "echo-after-2" and not stream:
                continue
            cases += [(path, model, stream) for path in _bodies(model, stream)]
    return cases


@dataclass
class Seen:
    """What clients received."""

    exchanges: list[tuple[str, bytes]] = field(default_factory=list)

    def add(self, label: str, response: httpx.Response) -> None:
        head = b"".join(k + b": " + v + b"\n" for k, v in response.headers.raw)
        self.exchanges.append((label, head + response.content))


@pytest.fixture(scope="module")
def echoing(tmp_path_factory, fake_upstream: Service) -> Iterator[tuple[Service, str]]:
    os.environ["ECHO_UPSTREAM_KEY"] = KEY
    workdir = tmp_path_factory.mktemp("secrets")
    with database("sqlite", workdir) as url:
        config = {
            "database_url": url,
            "local": {"enabled": False},
            "server": {"log_level": "debug"},
            "usage": {"flush_seconds": 0.1},
            "routing": {"backoff_seconds": 0.01, "failure_threshold": 1000},
            "providers": {
                "echo": {
                    "base_url": fake_upstream.base_url,
                    "api_key_env": "ECHO_UPSTREAM_KEY",
                    "models": ["*"],
                }
            },
        }
        service = start_gateway(workdir, config)
        try:
            yield service, url
        finally:
            stop(service.process)


def test_the_fake_really_echoes_the_key(fake_upstream: Service):
    """Without the gateway in between, the key comes back in every echo."""
    headers = {"Authorization": f"Bearer {KEY}"}
    for model in ERRORS:
        response = httpx.post(
            fake_upstream.base_url + "/chat/completions",
            headers=headers,
            json={"model": model, "messages": MESSAGES},
        )
        assert KEY in response.text and KEY in response.headers["x-echo-authorization"]
    for model, stream in (("echo-after-2", True), ("echo-ok", False), ("echo-ok", True)):
        response = httpx.post(
            fake_upstream.base_url + "/chat/completions",
            headers=headers,
            json={"model": model, "messages": MESSAGES, "stream": stream},
        )
        assert KEY in response.text


def test_the_key_leaves_nowhere(echoing: tuple[Service, str]):
    service, url = echoing
    seen = Seen()
    headers = {"Authorization": f"Bearer {service.key}"}
    with httpx.Client(base_url=service.url, headers=headers, timeout=30) as client:
        statuses = {}
        response_ids = []
        for path, model, stream in _cases():
            response = client.post(path, json=_bodies(model, stream)[path])
            seen.add(f"{path} {model} stream={stream}", response)
            statuses[(path, model, stream)] = response.status_code
            if path == "/v1/responses" and model == "echo-ok" and not stream:
                response_ids.append(response.json()["id"])
        # Stored responses and the request log are served back to clients too.
        for response_id in response_ids:
            seen.add("stored response", client.get(f"/v1/responses/{response_id}"))
            seen.add("input items", client.get(f"/v1/responses/{response_id}/input_items"))
        admin = {"Authorization": f"Bearer {service.keys['admin']}"}
        seen.add("request log", client.get("/admin/usage/requests?limit=500", headers=admin))
    # The echoes did happen: errors where errors were sent, answers where answers were.
    assert statuses[("/v1/chat/completions", "echo-400", False)] == 400
    assert statuses[("/v1/chat/completions", "echo-text-500", True)] == 500
    assert statuses[("/v1/messages", "echo-ok", True)] == 200
    assert len(seen.exchanges) >= 60
    leaked = [label for label, raw in seen.exchanges if SECRET_PART.encode() in raw]
    assert leaked == []
    masked = [label for label, raw in seen.exchanges if b"[REDACTED]" in raw]
    assert len(masked) >= 40  # the echoes reached the client, masked

    rows = _usage_rows(url, len(_cases()))
    assert [row for row in rows if SECRET_PART in repr(row)] == []
    stop(service.process)  # everything logged, up to the last flush at shutdown
    log = service.output()
    # WARNING lines, and DEBUG ones of the database driver (usage rows go through the
    # stdlib driver in a thread of their own, which logs no statements).
    assert "failed mid-way" in log and "DEBUG aiosqlite: executing" in log
    assert SECRET_PART not in log


def _usage_rows(url: str, expected: int) -> list:
    deadline = time.monotonic() + 10
    rows: list = []
    while time.monotonic() < deadline:
        rows = query(url, "SELECT * FROM usage")
        if len(rows) >= expected:
            break
        time.sleep(0.2)
    assert len(rows) >= expected
    return rows
