"""`savegate serve --log-format json`: every line a JSON object (the embedded model's
process's too), one access line per request with what served it, and no key's secret
anywhere; the text format carries the same access fields."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.conftest import (
    ROOT,
    Service,
    gone,
    model_pid,
    sidecar_pid,
    start_gateway,
    stop,
    stop_model,
)

UPSTREAM_KEY = "sk-upstream-" + secrets.token_hex(16)
MESSAGES = [{"role": "user", "content": "hello"}]


def _create_key(data_dir: Path, *extra: str) -> str:
    """A key made before the gateway starts: then it prints no first-start secrets."""
    done = subprocess.run(
        [sys.executable, "-m", "savegate", "keys", "create", "--data-dir", str(data_dir), *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    (found,) = re.findall(r"sk-savegate-\w+", done.stdout)
    return found


def _config(upstream: Service, workers: int, log_format: str) -> dict[str, Any]:
    return {
        "local": {"enabled": False},
        "server": {"workers": workers, "log_format": log_format},
        "providers": {
            "fake": {
                "base_url": upstream.base_url,
                "api_key_env": "LOG_TEST_UPSTREAM_KEY",
                "models": ["*"],
            }
        },
    }


def _traffic(service: Service, key: str) -> None:
    """OK, streamed, 401, 400, an upstream 500 and an upstream that echoes its key."""
    client = openai.OpenAI(api_key=key, base_url=service.base_url, max_retries=0)
    for _ in range(4):
        client.chat.completions.create(model="text-basic", messages=MESSAGES)
    stream = client.chat.completions.create(model="text-basic", messages=MESSAGES, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    url = service.base_url + "/chat/completions"
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.post(url, json={}, headers={"Authorization": "Bearer sk-nope"}).status_code == 401
    assert httpx.post(url, json={"model": "x"}, headers=headers).status_code == 400
    body = {"model": "status-500", "messages": MESSAGES}
    assert httpx.post(url, json=body, headers=headers).status_code >= 500
    body = {"model": "echo-500", "messages": MESSAGES}
    echoed = httpx.post(url, json=body, headers=headers)
    assert echoed.status_code >= 500 and UPSTREAM_KEY not in echoed.text


def _lines_until(service: Service, count: int) -> list[str]:
    """The log's lines once it holds `count` access lines (they are written off the
    request path, so a moment after the answers)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        lines = service.output().splitlines()
        if sum("savegate.access" in line for line in lines) >= count:
            return lines
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} access lines:\n{service.output()}")


def test_json_logs_parse_line_by_line_and_name_no_secret(tmp_path, fake_upstream: Service):
    key = _create_key(tmp_path / "data", "--name", "logs")
    env = {"LOG_TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    service = start_gateway(
        tmp_path, _config(fake_upstream, 2, "text"), env=env, args=("--log-format", "json")
    )
    try:
        _traffic(service, key)
        lines = _lines_until(service, 9)
    finally:
        stop(service.process)
    records = [json.loads(line) for line in lines if line.strip()]  # every line is JSON
    for record in records:
        assert {"time", "level", "logger", "message", "worker", "pid"} <= record.keys()
    text = "\n".join(lines)
    assert key not in text and key.removeprefix("sk-savegate-") not in text
    assert UPSTREAM_KEY not in text and UPSTREAM_KEY[12:] not in text
    assert {0, 1, 2} <= {r["worker"] for r in records}  # the supervisor is 0
    access = [r for r in records if r["logger"] == "savegate.access"]
    assert len(access) == 9
    assert all(re.fullmatch(r"req_[0-9a-f]{32}", r["request_id"]) for r in access)
    assert all(isinstance(r["latency_ms"], float) and r["latency_ms"] >= 0 for r in access)
    assert all(r["worker"] in (1, 2) for r in access)
    by_status: dict[int, list[dict[str, Any]]] = {}
    for record in access:
        by_status.setdefault(record["status"], []).append(record)
    served = by_status[200]
    assert len(served) == 5 and sum(r["stream"] for r in served) == 1
    for record in served:
        assert record["path"] == "/v1/chat/completions" and record["method"] == "POST"
        assert record["key_id"].startswith("key_") and record["model"] == "text-basic"
        assert record["provider"] == "fake" and record["deployment"] == "fake"
        assert record["tokens_in"] > 0 and record["tokens_out"] > 0
        assert record["attempts"] == 1 and record["error"] is None
    (refused,) = by_status[401]
    assert refused["key_id"] is None and refused["error"] == "invalid_api_key"
    (invalid,) = by_status[400]
    assert invalid["key_id"] == served[0]["key_id"] and invalid["error"]
    upstream = [r for r in access if r["status"] >= 500]
    assert len(upstream) == 2
    assert all(r["provider"] == "fake" and r["error"] for r in upstream)


def test_json_logs_of_the_embedded_model_process_too(tmp_path):
    """The embedded model runs in a process of its own, which a worker starts: its lines
    are JSON as well, and say they are the model process's."""
    data_dir = tmp_path / "data"
    key = _create_key(data_dir, "--name", "logs")
    config = {"server": {"workers": 2}}  # no provider: the model process starts at once
    service = start_gateway(tmp_path, config, args=("--log-format", "json"))
    try:
        client = openai.OpenAI(api_key=key, base_url=service.base_url, max_retries=0)
        answer = client.chat.completions.create(model="any", messages=MESSAGES, max_tokens=4)
        assert answer.model == "SmolLM2-135M-Instruct" and answer.choices[0].message.content
        pid = model_pid(data_dir)
    finally:
        stop(service.process)
        ended_by_itself = stop_model(data_dir)
    assert ended_by_itself  # so it has written its last line too
    records = [json.loads(line) for line in service.output().splitlines() if line.strip()]
    model = [r for r in records if r.get("process") == "model"]
    assert model and {r["pid"] for r in model} == {pid}
    for record in model:
        assert {"time", "level", "logger", "message"} <= record.keys() and "worker" not in record
    messages = [r["message"] for r in model]
    assert any(m.startswith("embedded model SmolLM2") and "ready" in m for m in messages)
    assert messages[-1] == "embedded model stopped"
    assert all(isinstance(r["worker"], int) for r in records if r not in model)


def test_text_logs_carry_the_access_fields(tmp_path, fake_upstream: Service):
    key = _create_key(tmp_path / "data", "--name", "logs")
    env = {"LOG_TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    service = start_gateway(tmp_path, _config(fake_upstream, 1, "text"), env=env)
    try:
        client = openai.OpenAI(api_key=key, base_url=service.base_url, max_retries=0)
        answer = client.chat.completions.with_raw_response.create(
            model="text-basic", messages=MESSAGES
        )
        lines = _lines_until(service, 1)
    finally:
        stop(service.process)
    (line,) = [line for line in lines if "savegate.access" in line]
    assert f"request_id={answer.headers['x-request-id']}" in line
    assert "POST /v1/chat/completions 200" in line
    for field in ("key_id=key_", "model=text-basic", "provider=fake", "status=200", "stream="):
        assert field in line, field
    assert re.search(r"tokens_in=\d+ tokens_out=\d+", line)
    assert key not in service.output() and UPSTREAM_KEY not in service.output()


def test_access_lines_outlive_their_sidecar(tmp_path, fake_upstream: Service):
    """A gateway's access lines are made and written by its sidecar process. Killed, it
    is started again, and meanwhile the gateway makes them itself: no line is lost, nor
    those of the last requests before a SIGTERM; no sidecar outlives its gateway."""
    key = _create_key(tmp_path / "data", "--name", "logs")
    env = {"LOG_TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    service = start_gateway(tmp_path, _config(fake_upstream, 1, "text"), env=env)
    client = openai.OpenAI(api_key=key, base_url=service.base_url, max_retries=0)
    ids = []
    try:
        first = sidecar_pid(service)
        for _ in range(3):
            ids.append(_answered_id(client))
        _lines_until(service, 3)
        os.kill(first, signal.SIGKILL)
        assert gone(first, 10)
        for _ in range(10):  # while it is down, and once the next one is up
            ids.append(_answered_id(client))
            time.sleep(0.15)
        second = sidecar_pid(service, 2)
        assert "the sidecar process ended" in service.output()
        for _ in range(5):
            ids.append(_answered_id(client))
    finally:
        stop(service.process)
    assert gone(second, 10)
    lines = [line for line in service.output().splitlines() if "savegate.access" in line]
    assert sorted(re.findall(r"request_id=(req_\w+)", "\n".join(lines))) == sorted(ids)


def _answered_id(client: openai.OpenAI) -> str:
    answer = client.chat.completions.with_raw_response.create(model="text-basic", messages=MESSAGES)
    return answer.headers["x-request-id"]
