"""Client rate limits per key through the gateway: in-process, and exact across two
gateway processes sharing the real Redis of this machine."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.conftest import Service, start_gateway, stop

MESSAGES = [{"role": "user", "content": "hello"}]


def _config(fake: Service, database: str, redis_prefix: str | None) -> dict:
    config = {
        "database_url": f"sqlite+aiosqlite:///{database}",
        "local": {"enabled": False},
        "providers": {"fake": {"base_url": fake.base_url, "models": ["*"]}},
    }
    if redis_prefix:
        config |= {"redis_url": "redis://127.0.0.1:6379/0", "redis_prefix": redis_prefix}
    return config


def _new_key(service: Service, **limits) -> str:
    response = httpx.post(
        service.url + "/admin/keys",
        json={"name": "limited", **limits},
        headers={"Authorization": f"Bearer {service.keys['admin']}"},
    )
    assert response.status_code == 201, response.text
    return response.json()["secret"]


async def _burst(
    urls: list[str], secret: str, count: int, model: str = "text-basic"
) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200)) as client:

        async def one(index: int) -> httpx.Response:
            return await client.post(
                urls[index % len(urls)] + "/chat/completions",
                json={"model": model, "messages": MESSAGES},
                headers={"Authorization": f"Bearer {secret}"},
            )

        return await asyncio.gather(*(one(i) for i in range(count)))


@pytest.fixture(scope="module")
def single(tmp_path_factory, fake_upstream: Service) -> Iterator[Service]:
    workdir = tmp_path_factory.mktemp("limited")
    service = start_gateway(workdir, _config(fake_upstream, str(workdir / "gw.db"), None))
    yield service
    stop(service.process)


def test_rpm_in_process(single: Service):
    secret = _new_key(single, rpm=20)
    responses = asyncio.run(_burst([single.base_url], secret, 60))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 20, 429: 40}
    refused = next(r for r in responses if r.status_code == 429)
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "rpm" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    admitted = next(r for r in responses if r.status_code == 200)
    assert admitted.headers["x-ratelimit-limit-requests"] == "20"
    assert int(admitted.headers["x-ratelimit-remaining-requests"]) < 20


def test_concurrency_limit(single: Service):
    secret = _new_key(single, max_concurrent=2)
    responses = asyncio.run(_burst([single.base_url], secret, 6, model="slow-first-400"))
    statuses = Counter(r.status_code for r in responses)
    assert statuses[200] == 2 and statuses[429] == 4
    # Slots come back when requests finish.
    assert asyncio.run(_burst([single.base_url], secret, 1))[0].status_code == 200


def test_tpm_counts_real_tokens(single: Service):
    secret = _new_key(single, tpm=100)  # text-basic costs 44 tokens
    statuses = [r.status_code for r in asyncio.run(_burst([single.base_url], secret, 1))]
    statuses += [r.status_code for r in asyncio.run(_burst([single.base_url], secret, 1))]
    statuses += [r.status_code for r in asyncio.run(_burst([single.base_url], secret, 1))]
    assert statuses == [200, 200, 429]


def test_two_gateways_share_an_exact_rpm_through_redis(tmp_path, fake_upstream: Service):
    prefix = f"savegate-test-{secrets.token_hex(4)}:"
    shared = str(tmp_path / "shared.db")  # both replicas share the key store
    first = start_gateway(tmp_path / "a", _config(fake_upstream, shared, prefix), name="a")
    second = start_gateway(tmp_path / "b", _config(fake_upstream, shared, prefix), name="b")
    try:
        secret = _new_key(first, rpm=30)
        responses = asyncio.run(_burst([first.base_url, second.base_url], secret, 120))
        statuses = Counter(r.status_code for r in responses)
        assert statuses[200] in (30, 31), statuses  # exact within one request
        assert statuses[200] + statuses[429] == 120, statuses
        # Each replica answered half the burst: alone, each would have admitted 30.
        per_replica = Counter(str(r.url).split("/v1")[0] for r in responses)
        assert sorted(per_replica.values()) == [60, 60]
    finally:
        stop(first.process)
        stop(second.process)
        client = redis.Redis(host="127.0.0.1", port=6379)
        for key in client.scan_iter(prefix + "*"):
            client.delete(key)
