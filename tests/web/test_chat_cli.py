"""`savegate chat` in a real process: streaming, a kept conversation, Ctrl-C, /exit."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import httpx

from tests.conftest import ROOT, Service
from tests.web.test_playground import TEXT_BASIC, disconnects


def chat_process(gateway: Service, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SAVEGATE_API_KEY": gateway.key, "PYTHONUNBUFFERED": "1"}
    env.pop("SAVEGATE_BASE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "savegate", "chat", "--base-url", gateway.base_url, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env=env,
    )


def read_until(process: subprocess.Popen[bytes], marker: str, timeout: float = 20) -> str:
    """What the process printed up to and including `marker` (the prompt has no newline)."""
    assert process.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} in {seen.decode(errors='replace')!r}"
        if select.select([process.stdout], [], [], left)[0]:
            data = os.read(process.stdout.fileno(), 4096)
            assert data, f"output ended before {marker!r}: {seen.decode(errors='replace')!r}"
            seen += data
    return seen.decode()


def say(process: subprocess.Popen[bytes], line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line.encode() + b"\n")
    process.stdin.flush()


def test_answers_stream_and_the_conversation_is_kept(web_gateway: Service, fake_upstream: Service):
    process = chat_process(web_gateway, "--model", "text-basic")
    try:
        assert "Chatting with text-basic" in read_until(process, "you> ")
        say(process, "Hello")
        first = read_until(process, "you> ")
        assert f"text-basic> {TEXT_BASIC}" in first
        assert "[14 prompt + 30 completion tokens · req_" in first
        say(process, "And again?")
        read_until(process, "you> ")
        say(process, "/exit")
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
    last = httpx.get(fake_upstream.url + "/_log").json()["requests"][-1]["body"]
    assert [m["role"] for m in last["messages"]] == ["user", "assistant", "user"]
    assert last["messages"][1]["content"].startswith(TEXT_BASIC)


def test_ctrl_c_stops_the_answer_and_the_upstream_call(
    web_gateway: Service, fake_upstream: Service
):
    before = disconnects(fake_upstream)
    process = chat_process(web_gateway, "--model", "slow")
    try:
        read_until(process, "you> ")
        say(process, "Count")
        read_until(process, "tick3")
        process.send_signal(signal.SIGINT)
        assert "[stopped · req_" in read_until(process, "you> ")
        say(process, "/exit")
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
    deadline = time.monotonic() + 10
    while disconnects(fake_upstream) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert disconnects(fake_upstream) == before + 1


def test_errors_are_shown_and_the_chat_goes_on(web_gateway: Service):
    process = chat_process(web_gateway, "--model", "no-such-model")
    try:
        read_until(process, "you> ")
        say(process, "Hello")
        assert "error: 404 model_not_found: The model `no-such-model` does not exist" in (
            read_until(process, "you> ")
        )
        process.stdin.close()  # Ctrl-D
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()


def test_a_bad_key_is_reported(web_gateway: Service):
    env = {**os.environ, "SAVEGATE_API_KEY": "sk-savegate-" + "x" * 32}
    result = subprocess.run(
        [sys.executable, "-m", "savegate", "chat", "--base-url", web_gateway.base_url],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 1
    assert "401" in result.stderr
