"""The response cache across processes (two gateways and a two-worker gateway sharing a
real Redis under a prefix of their own), with Redis down, and its bounds: TTL and bytes."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from tests.conftest import Service, free_port, start_gateway, stop
from tests.fakes.upstream import assemble, fixture_events
from tests.test_response_cache_native import events, stream, turn

REDIS_URL = "redis://127.0.0.1:6379/0"


def _config(fake: Service, **cache: object) -> dict:
    os.environ.setdefault("FAKE_UPSTREAM_KEY", "sk-fake-upstream-key")
    return {
        "local": {"enabled": False},
        "cache": {"models": ["*"], **cache},
        "providers": {
            "fake": {
                "base_url": fake.base_url,
                "api_key_env": "FAKE_UPSTREAM_KEY",
                "models": ["*"],
            }
        },
    }


def _body(model: str = "text-basic", **extra: object) -> dict:
    messages = [{"role": "user", "content": f"hello {uuid.uuid4().hex}"}]
    return {"model": model, "messages": messages, "temperature": 0, **extra}


def _calls(fake: Service, body: dict) -> int:
    log = httpx.get(fake.url + "/_log").json()["requests"]
    return sum(1 for r in log if r["body"].get("messages") == body["messages"])


def _state(service: Service, body: dict) -> str:
    headers = {"Authorization": f"Bearer {service.key}"}
    answer = httpx.post(service.base_url + "/chat/completions", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.headers["x-savegate-cache"]


@pytest.fixture
def prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own, its keys deleted afterwards."""
    name = f"savegate-test-{secrets.token_hex(4)}:"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=name + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_two_gateways_share_one_redis_cache(tmp_path: Path, fake_upstream: Service, prefix: str):
    config = {**_config(fake_upstream, backend="redis"), "redis_url": REDIS_URL}
    config["redis_prefix"] = prefix
    first = start_gateway(tmp_path / "a", config, name="a")
    second = start_gateway(tmp_path / "b", config, name="b")
    try:
        body = _body()
        assert [_state(first, body), _state(second, body)] == ["miss", "hit"]
        assert _calls(fake_upstream, body) == 1
        stored = redis.Redis.from_url(REDIS_URL).keys(prefix + "cache:*")
        assert stored  # under the configured prefix

        async def fire(body: dict) -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                return list(
                    await asyncio.gather(
                        *(
                            client.post(
                                gateway.base_url + "/chat/completions",
                                json=body,
                                headers={"Authorization": f"Bearer {gateway.key}"},
                            )
                            for gateway in (first, second) * 3
                        )
                    )
                )

        slow = _body("ticks-6", stream=True)
        answers = asyncio.run(fire(slow))
        assert {a.status_code for a in answers} == {200}
        assert _calls(fake_upstream, slow) == 1  # one process made it, through the lock
        assert sorted(a.headers["x-savegate-cache"] for a in answers) == ["hit"] * 5 + ["miss"]
    finally:
        stop(first.process)
        stop(second.process)


def test_two_workers_share_the_redis_cache(tmp_path: Path, fake_upstream: Service, prefix: str):
    config = {**_config(fake_upstream, backend="redis"), "redis_url": REDIS_URL}
    config["redis_prefix"] = prefix
    service = start_gateway(tmp_path, config, args=("--workers", "2"))
    try:
        body = _body()
        # New connections each time, so that both workers answer some of them.
        states = [_state(service, body) for _ in range(8)]
        assert states == ["miss"] + ["hit"] * 7
        assert _calls(fake_upstream, body) == 1
    finally:
        stop(service.process)


def test_native_responses_events_are_kept_in_redis(
    tmp_path: Path, fake_upstream: Service, prefix: str
):
    config = {**_config(fake_upstream, backend="redis"), "redis_url": REDIS_URL}
    config["redis_prefix"] = prefix
    native = {"base_url": fake_upstream.base_url, "api_key_env": "FAKE_UPSTREAM_KEY"}
    config["providers"] = {"native": {**native, "responses": "native", "models": ["resp-*"]}}
    service = start_gateway(tmp_path, config)
    try:
        body = turn()
        (live_state, live), (state, replayed) = stream(service, body), stream(service, body)
        assert (live_state, state) == ("miss", "hit")
        assert replayed == live
        whole = httpx.post(
            service.base_url + "/responses",
            json=body,
            headers={"Authorization": f"Bearer {service.key}"},
        )
        assert whole.headers["x-savegate-cache"] == "hit"
        assert whole.json() == events(live)[-1]["response"]
    finally:
        stop(service.process)


def test_redis_down_bypasses_the_cache_and_serves(tmp_path: Path, fake_upstream: Service):
    config = {
        **_config(fake_upstream, backend="redis"),
        "redis_url": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
    }
    service = start_gateway(tmp_path, config)
    try:
        body = _body()
        assert [_state(service, body) for _ in range(3)] == ["bypass"] * 3
        assert _calls(fake_upstream, body) == 3
        assert "Redis unavailable" in service.output()
    finally:
        stop(service.process)


def test_entries_expire_after_their_ttl(tmp_path: Path, fake_upstream: Service):
    service = start_gateway(tmp_path, _config(fake_upstream, ttl_seconds=1))
    try:
        body = _body()
        assert [_state(service, body), _state(service, body)] == ["miss", "hit"]
        time.sleep(1.5)
        assert _state(service, body) == "miss"
        assert _calls(fake_upstream, body) == 2
    finally:
        stop(service.process)


def test_the_byte_bound_evicts_the_least_recently_used(tmp_path: Path, fake_upstream: Service):
    answer = len(orjson.dumps(assemble(fixture_events("text-basic"))))
    entry = answer + 100  # its encoding: the answer, the provider and its list cost
    big_answer = len(orjson.dumps(assemble(fixture_events("json-object-long"))))
    assert big_answer > entry
    config = _config(fake_upstream, max_bytes=int(2.5 * entry), max_entry_bytes=entry)
    service = start_gateway(tmp_path, config)
    try:
        a, b, c = _body(), _body(), _body()
        assert [_state(service, a), _state(service, b), _state(service, a)] == [
            "miss",
            "miss",
            "hit",
        ]
        assert _state(service, c) == "miss"  # room for two: b, least recently used, goes
        assert [_state(service, a), _state(service, c), _state(service, b)] == [
            "hit",
            "hit",
            "miss",
        ]
        big = _body("json-object-long")  # larger than one entry may be: never kept
        assert [_state(service, big), _state(service, big)] == ["miss", "miss"]
    finally:
        stop(service.process)
