"""Usage survives SIGTERM under load and a database outage."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import httpx
import pytest

from tests.conftest import Service, start_gateway, stop
from tests.stores import database, query

MESSAGES = [{"role": "user", "content": "hello"}]


def _config(url: str, fake: Service) -> dict:
    return {
        "database_url": url,
        "local": {"enabled": False},
        "usage": {"flush_seconds": 0.2},
        "providers": {"fake": {"base_url": fake.base_url, "models": ["*"]}},
    }


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigterm_under_load_loses_no_usage(backend: str, tmp_path, fake_upstream: Service):
    with database(backend, tmp_path) as url:
        service = start_gateway(tmp_path, _config(url, fake_upstream))
        answered: list[int] = []

        async def load() -> None:
            async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as client:

                async def one(stream: bool) -> None:
                    try:
                        response = await client.post(
                            "/chat/completions",
                            headers={"Authorization": f"Bearer {service.key}"},
                            json={"model": "text-basic", "messages": MESSAGES, "stream": stream},
                        )
                        if response.status_code == 200 and (
                            not stream or response.text.endswith("data: [DONE]\n\n")
                        ):
                            answered.append(1)
                    except httpx.HTTPError:
                        pass  # refused once the server stopped accepting

                await asyncio.gather(*(one(i % 2 == 0) for i in range(400)))

        runner = threading.Thread(target=asyncio.run, args=(load(),))
        runner.start()
        deadline = time.monotonic() + 30
        while len(answered) < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        service.process.send_signal(signal.SIGTERM)
        runner.join(timeout=60)
        # Uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert service.process.wait(timeout=60) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in service.output()
        assert len(answered) >= 100
        (rows,) = query(url, "SELECT count(*) FROM usage WHERE status = 200")[0]
        assert rows >= len(answered)


def test_database_outage_loses_no_usage(tmp_path, fake_upstream: Service):
    with database("postgres", tmp_path) as url:
        name = url.rsplit("/", 1)[1]
        service = start_gateway(tmp_path, _config(url, fake_upstream))
        try:
            admin = url.rsplit("/", 1)[0] + "/postgres"
            query(admin, f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
            query(
                admin,
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
            )
            headers = {"Authorization": f"Bearer {service.key}"}
            for _ in range(20):
                response = httpx.post(
                    service.base_url + "/chat/completions",
                    headers=headers,
                    json={"model": "text-basic", "messages": MESSAGES},
                )
                assert response.status_code == 200  # the hot path needs no database
            time.sleep(1.5)  # the writer fails and keeps the rows
            query(admin, f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
            deadline = time.monotonic() + 45
            rows = 0
            while time.monotonic() < deadline:
                (rows,) = query(url, "SELECT count(*) FROM usage")[0]
                if rows >= 20:
                    break
                time.sleep(0.5)
            assert rows == 20
            assert "could not write usage" in service.output()
        finally:
            stop(service.process)


def test_graceful_shutdown_lets_streams_finish(tmp_path, fake_upstream: Service):
    config = {
        "local": {"enabled": False},
        "providers": {"fake": {"base_url": fake_upstream.base_url, "models": ["*"]}},
    }
    service = start_gateway(tmp_path, config)
    headers = {"Authorization": f"Bearer {service.key}"}
    body = {"model": "ticks-40", "messages": MESSAGES, "stream": True}
    received = b""
    with httpx.stream(
        "POST", service.base_url + "/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        for chunk in response.iter_bytes():
            if not received:
                service.process.send_signal(signal.SIGTERM)
                time.sleep(0.3)
                with pytest.raises(httpx.ConnectError):
                    httpx.get(service.url + "/health", timeout=2)
            received += chunk
    assert received.endswith(b"data: [DONE]\n\n")
    assert received.count(b"tick") == 40
    assert service.process.wait(timeout=30) in (0, -signal.SIGTERM)


def test_shutdown_past_its_grace_cuts_visibly(tmp_path, fake_upstream: Service):
    """Streams and requests that outlive the grace end with their dialect's error, never
    silently, and their usage rows say the server cut them."""
    with database("sqlite", tmp_path) as url:
        config = {
            **_config(url, fake_upstream),
            "server": {"shutdown_grace_seconds": 1},
        }
        service = start_gateway(tmp_path, config)
        headers = {"Authorization": f"Bearer {service.key}"}
        slow = {"model": "ticks-200", "stream": True}  # 10 s
        requests = {
            "chat": ("/chat/completions", {**slow, "messages": MESSAGES}),
            "messages": ("/messages", {**slow, "max_tokens": 50, "messages": MESSAGES}),
            "responses": ("/responses", {**slow, "input": "hello"}),
            "json": (
                "/chat/completions",
                {"model": "slow-json", "messages": MESSAGES, "user": str(tmp_path)},
            ),
        }
        bodies: dict[str, bytes] = {}
        started = threading.Barrier(len(requests) + 1, timeout=30)

        def run(name: str) -> None:
            path, body = requests[name]
            if not body.get("stream"):
                started.wait()  # its answer would take 30 s: sent once the streams run
            with httpx.stream(
                "POST", service.base_url + path, json=body, headers=headers, timeout=30
            ) as response:
                bodies[name + " status"] = str(response.status_code).encode()
                chunks = response.iter_bytes()
                bodies[name] = b""
                if body.get("stream"):
                    bodies[name] = next(chunks)
                    started.wait()
                bodies[name] += b"".join(chunks)

        threads = [threading.Thread(target=run, args=(name,)) for name in requests]
        try:
            for thread in threads:
                thread.start()
            started.wait()  # every stream has sent its first bytes
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # and the JSON request is upstream
                sent = httpx.get(fake_upstream.url + "/_log").json()["requests"][-20:]
                if any(r["body"].get("user") == str(tmp_path) for r in sent):
                    break
                time.sleep(0.05)
            service.process.send_signal(signal.SIGTERM)
            for thread in threads:
                thread.join(timeout=30)
            assert service.process.wait(timeout=30) in (0, -signal.SIGTERM)
        finally:
            stop(service.process)
        chat, messages, responses = bodies["chat"], bodies["messages"], bodies["responses"]
        assert b'"code":"server_shutting_down"' in chat and not chat.endswith(b"[DONE]\n\n")
        assert b"event: error" in messages and b"overloaded_error" in messages
        assert b"event: response.failed" in responses and b"server_shutting_down" in responses
        assert bodies["json status"] == b"503" and b"server_shutting_down" in bodies["json"]
        rows = query(url, "SELECT endpoint, status, error_type FROM usage")
        assert sorted(rows) == [("chat", 503, "server_shutting_down")] * 4, rows


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_long_model_name_does_not_stop_metering(backend: str, tmp_path, fake_upstream: Service):
    """Any client key may ask a wildcard route for a name longer than the column holds."""
    with database(backend, tmp_path) as url:
        config = _config(url, fake_upstream)
        config["providers"]["fake"]["models"] = [{"name": "gpt-4o-*", "upstream": "text-basic"}]
        service = start_gateway(tmp_path, config)
        try:
            headers = {"Authorization": f"Bearer {service.key}"}
            long_name = "gpt-4o-" + "x" * 293
            names = [long_name, "gpt-4o-\x00nul", *(["gpt-4o-mini"] * 10)]
            for name in names:
                response = httpx.post(
                    service.base_url + "/chat/completions",
                    headers=headers,
                    json={"model": name, "messages": MESSAGES},
                )
                assert response.status_code == 200, response.text
            deadline = time.monotonic() + 30
            rows: list = []
            while time.monotonic() < deadline and len(rows) < len(names):
                rows = query(url, "SELECT requested_model FROM usage")
                time.sleep(0.2)
            assert sorted(row[0] for row in rows) == sorted(
                [long_name[:200], "gpt-4o-nul", *(["gpt-4o-mini"] * 10)]
            )
            spend = httpx.get(
                service.url + "/admin/spend",
                headers={"Authorization": f"Bearer {service.keys['admin']}"},
            )
            assert spend.status_code == 200, spend.text
            assert spend.json()["requests"] == len(names)
        finally:
            stop(service.process)
        assert "could not write usage" not in service.output()
