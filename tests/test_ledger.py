"""One budget ledger for every process: two replicas on PostgreSQL and Redis, and one
gateway with two workers on SQLite (the database ledger). Hard budgets hold across them,
survive Redis losing its data, and limit changes reach every process within a second."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import Service, start_gateway, stop
from tests.stores import database, query

REDIS_URL = "redis://127.0.0.1:6379/0"
MESSAGES = [{"role": "user", "content": "hello"}]
PRICE = {"input": 1.0, "output": 2.0, "cached_input": 0.5}
COST = (14 * 1.0 + 30 * 2.0) / 1e6  # text-basic: 14 prompt and 30 completion tokens
BODY = {"model": "text-basic", "messages": MESSAGES, "max_tokens": 30}


@dataclass
class Gateways:
    services: list[Service]
    url: str  # the database
    prefix: str | None  # the Redis key prefix, when there is Redis

    @property
    def admin_key(self) -> str:
        return next(s.keys["admin"] for s in self.services if "admin" in s.keys)

    def admin(self, method: str, path: str, at: int = 0, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        url = self.services[at].url + path
        return httpx.request(method, url, headers=headers, timeout=30, **kwargs)

    def new_key(self, **settings) -> tuple[str, str]:
        response = self.admin("POST", "/admin/keys", json={"name": "ledger", **settings})
        assert response.status_code == 201, response.text
        time.sleep(0.5)  # every process has refreshed its keys
        return response.json()["id"], response.json()["secret"]

    def spend(self, key_id: str) -> dict:
        return self.admin("GET", "/admin/spend", params={"key_id": key_id}).json()


def _config(fake: Service, url: str, prefix: str | None, **extra) -> dict:
    config = {
        "database_url": url,
        "local": {"enabled": False},
        "usage": {"flush_seconds": 0.1},
        "prices": {"text-basic": PRICE},
        "providers": {"fake": {"base_url": fake.base_url, "models": ["*"]}},
        **extra,
    }
    if prefix is not None:
        config |= {"redis_url": REDIS_URL, "redis_prefix": prefix}
    return config


def _redis() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    return client


def _drop(client: redis.Redis, prefix: str) -> int:
    keys = list(client.scan_iter(match=f"{prefix}*"))
    return int(client.delete(*keys)) if keys else 0


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, fake_upstream: Service) -> Iterator[Gateways]:
    """Two replicas behind no balancer: the tests spread requests over both."""
    client = _redis()
    prefix = f"savegate-test:{secrets.token_hex(6)}:"
    workdir = tmp_path_factory.mktemp("replicas")
    with database("postgres", workdir) as url:
        config = _config(fake_upstream, url, prefix)
        services = [start_gateway(workdir / n, config, name=n) for n in ("a", "b")]
        try:
            yield Gateways(services, url, prefix)
        finally:
            for service in services:
                stop(service.process)
            _drop(client, prefix)
            client.close()


@pytest.fixture(scope="module")
def workers(tmp_path_factory, fake_upstream: Service) -> Iterator[Gateways]:
    """One gateway, two worker processes on one SQLite file, no Redis."""
    workdir: Path = tmp_path_factory.mktemp("workers")
    with database("sqlite", workdir) as url:
        service = start_gateway(workdir, _config(fake_upstream, url, None, server={"workers": 2}))
        try:
            yield Gateways([service], url, None)
        finally:
            stop(service.process)


async def _fire(urls: list[str], secret: str, count: int) -> list[httpx.Response]:
    """`count` requests at once, spread over `urls` in turn."""
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        headers = {"Authorization": f"Bearer {secret}"}
        calls = (
            client.post(urls[i % len(urls)] + "/v1/chat/completions", json=BODY, headers=headers)
            for i in range(count)
        )
        return list(await asyncio.gather(*calls))


def _check_refusals(responses: list[httpx.Response]) -> tuple[int, int]:
    served = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(served) + len(refused) == len(responses)
    assert all(r.json()["error"]["code"] == "insufficient_quota" for r in refused)
    return len(served), len(refused)


@pytest.mark.parametrize("setup", ["replicas", "workers"])
def test_hard_budget_holds_under_200_concurrent_requests_over_two_processes(
    setup: str, request: pytest.FixtureRequest
):
    gateways: Gateways = request.getfixturevalue(setup)
    budget = COST * 20.5
    key_id, secret = gateways.new_key(monthly_budget_usd=budget)
    urls = [s.url for s in gateways.services]
    served, refused = _check_refusals(asyncio.run(_fire(urls, secret, 200)))
    assert served > 0 and refused > 0
    spend = gateways.spend(key_id)
    assert spend["requests"] == served
    assert spend["cost_usd"] <= budget + 1e-12  # documented bound: no overspend at all
    # Settled: what is left of the budget serves requests again, and no more than that.
    for _ in range(3):
        more, _ = _check_refusals(asyncio.run(_fire(urls, secret, 40)))
        served += more
    spend = gateways.spend(key_id)
    assert spend["cost_usd"] <= budget + 1e-12
    # Each costs COST once settled; the last ones need room for their worst case.
    assert 18 <= served <= 20
    print(f"{setup}: budget {budget:.6f}, spent {spend['cost_usd']:.6f}, served {served}")


def test_workers_keep_the_ledger_in_the_database(workers: Gateways):
    key_id, secret = workers.new_key(monthly_token_quota=10_000)
    asyncio.run(_fire([workers.services[0].url], secret, 4))
    rows = query(workers.url, "SELECT tokens FROM budget_months WHERE key_id = :k", {"k": key_id})
    assert rows == [(4 * 44,)]
    held = "SELECT sum(tokens), count(*) FROM budget_holds WHERE key_id = :k"
    assert query(workers.url, held, {"k": key_id}) == [(0, 4)]  # settled, kept a while


def _balance(gateways: Gateways, key_id: str) -> float | None:
    client = _redis()
    try:
        month = time.strftime("%Y-%m", time.gmtime())
        spend = client.hget(f"{gateways.prefix}budget:{{{key_id}}}:{month}", "spend")
        return None if spend is None else float(spend)
    finally:
        client.close()


def test_redis_losing_the_ledger_mid_run_keeps_the_balance(replicas: Gateways):
    budget = COST * 20.5
    key_id, secret = replicas.new_key(monthly_budget_usd=budget)
    urls = [s.url for s in replicas.services]
    headers = {"Authorization": f"Bearer {secret}"}
    statuses: list[int] = []
    flushed: list[int] = []

    async def run() -> None:
        async with httpx.AsyncClient(timeout=60) as client:

            async def worker(n: int) -> None:
                for i in range(12):
                    url = urls[(n + i) % 2] + "/v1/chat/completions"
                    response = await client.post(url, json=BODY, headers=headers)
                    statuses.append(response.status_code)
                    if statuses.count(200) >= 10 and not flushed:
                        flushed.append(_drop(_redis(), f"{replicas.prefix}budget:"))

            await asyncio.gather(*(worker(n) for n in range(6)))

    asyncio.run(run())
    assert flushed and flushed[0] > 0  # the ledger was there, and went
    assert set(statuses) <= {200, 429}
    # One replica answers for its own rows at once, the other's are written within its
    # usage flush (0.1 s here).
    deadline = time.monotonic() + 10
    spend = replicas.spend(key_id)
    while spend["requests"] < statuses.count(200) and time.monotonic() < deadline:
        time.sleep(0.1)
        spend = replicas.spend(key_id)
    assert spend["requests"] == statuses.count(200) >= 18  # as if nothing had happened
    assert spend["cost_usd"] <= budget + 1e-12
    time.sleep(0.5)
    balance = _balance(replicas, key_id)
    assert balance == pytest.approx(spend["cost_usd"], abs=1e-12)
    print(f"flushed {flushed[0]} keys: served {spend['requests']}, refused {statuses.count(429)}")
    print(f"spent {spend['cost_usd']:.6f} of {budget:.6f}; the rebuilt ledger says {balance:.6f}")


def test_a_limit_changed_on_one_replica_applies_on_the_other_within_a_second(
    replicas: Gateways,
):
    key_id, secret = replicas.new_key(monthly_budget_usd=1.0)
    other = replicas.services[1].url + "/v1/chat/completions"
    headers = {"Authorization": f"Bearer {secret}"}
    assert httpx.post(other, json=BODY, headers=headers, timeout=30).status_code == 200

    def until(status: int) -> float:
        began = time.monotonic()
        while httpx.post(other, json=BODY, headers=headers, timeout=30).status_code != status:
            assert time.monotonic() - began < 1.0
            time.sleep(0.02)
        return time.monotonic() - began

    changed = replicas.admin("PATCH", f"/admin/keys/{key_id}", json={"monthly_budget_usd": COST})
    assert changed.status_code == 200, changed.text
    lowered = until(429)
    changed = replicas.admin("PATCH", f"/admin/keys/{key_id}", json={"monthly_budget_usd": 1.0})
    raised = until(200)
    print(f"limit change applied on the other replica after {lowered:.3f} s, {raised:.3f} s")
