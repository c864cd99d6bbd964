"""`/health/live` answers while the process runs; `/health/ready` only while it can serve:
503 naming the failed check when the configured Redis is gone, and while it drains."""

from __future__ import annotations

import json
import signal
import socket
import time

import httpx

from tests.cluster import PrivateRedis
from tests.conftest import Service, start_gateway, stop

MESSAGES = [{"role": "user", "content": "hello"}]


def _config(upstream: Service, **extra: object) -> dict[str, object]:
    return {
        "local": {"enabled": False},
        "providers": {"fake": {"base_url": upstream.base_url, "models": ["*"]}},
        **extra,
    }


def test_ready_names_redis_while_it_is_down(tmp_path, fake_upstream: Service):
    redis = PrivateRedis(tmp_path)
    redis.start()
    service = None
    try:
        config = _config(fake_upstream, redis_url=redis.url, redis_prefix="health-test:")
        service = start_gateway(tmp_path, config)
        ready = httpx.get(service.url + "/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {
            "startup": "ok",
            "database": "ok",
            "providers": "ok",
            "redis": "ok",
        }
        redis.stop()
        deadline = time.monotonic() + 15  # past the checks' short cache
        while time.monotonic() < deadline:
            ready = httpx.get(service.url + "/health/ready", timeout=10)
            if ready.status_code == 503:
                break
            time.sleep(0.2)
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "unavailable" and body["failed"] == ["redis"]
        assert body["checks"]["database"] == "ok" and body["checks"]["redis"] != "ok"
        assert httpx.get(service.url + "/health/live").json() == {"status": "ok"}
        redis.start()  # back: ready again, nothing restarted
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if httpx.get(service.url + "/health/ready", timeout=10).status_code == 200:
                break
            time.sleep(0.2)
        assert httpx.get(service.url + "/health/ready").status_code == 200
    finally:
        if service is not None:
            stop(service.process)
        redis.stop()


def _request(method: str, path: str, port: int, body: bytes = b"", key: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if key:
        head += f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_ready_is_503_while_draining_and_live_stays_200(tmp_path, fake_upstream: Service):
    """A stream in flight, and behind it on the same connection (pipelined) a readiness
    probe and a liveness probe: SIGTERM starts the drain, the stream finishes, then the
    probes are answered, by a process that is draining."""
    service = start_gateway(tmp_path, _config(fake_upstream))
    body = json.dumps({"model": "ticks-30", "messages": MESSAGES, "stream": True}).encode()
    try:
        with socket.create_connection(("127.0.0.1", service.port), timeout=30) as conn:
            conn.sendall(
                _request("POST", "/v1/chat/completions", service.port, body, service.key)
                + _request("GET", "/health/ready", service.port)
                + _request("GET", "/health/live", service.port)
            )
            received = conn.recv(65536)
            assert received.startswith(b"HTTP/1.1 200")  # the stream began
            service.process.send_signal(signal.SIGTERM)
            while chunk := conn.recv(65536):
                received += chunk
        service.process.wait(timeout=30)
    finally:
        stop(service.process)
    stream, _, rest = received.partition(b"0\r\n\r\n")  # the stream's last chunk
    assert b"data: [DONE]" in stream and stream.count(b"tick") == 30
    ready, _, live = rest.partition(b"HTTP/1.1 200")
    assert ready.startswith(b"HTTP/1.1 503"), rest
    answer = json.loads(ready.partition(b"\r\n\r\n")[2])
    assert answer["status"] == "draining" and answer["failed"] == ["draining"]
    assert json.loads(live.partition(b"\r\n\r\n")[2]) == {"status": "ok"}
