"""Client rate limits per key through the gateway: in-process, exact across two gateway
processes sharing the real Redis of this machine, and exact across the two workers of one
gateway without Redis (through its SQLite database)."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

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
    urls: list[str], secret: str, count: int, model: str = "text-basic", pids: tuple[int, ...] = ()
) -> list[httpx.Response]:
    """`count` requests at once, spread over `urls`, each on a connection of its own. Given
    the workers' `pids`, the connections are first opened until every worker holds some
    (one worker can accept a whole burst), and each response gets `extensions["pid"]`:
    the worker that answered it."""
    for _ in range(20):
        clients = [
            httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=1))
            for _ in range(count)
        ]
        if not pids or await _spread(clients, urls[0], pids):
            break
        await asyncio.gather(*(client.aclose() for client in clients))
    try:

        async def one(index: int) -> httpx.Response:
            return await clients[index].post(
                urls[index % len(urls)] + "/chat/completions",
                json={"model": model, "messages": MESSAGES},
                headers={"Authorization": f"Bearer {secret}"},
            )

        responses = await asyncio.gather(*(one(i) for i in range(count)))
        if pids:  # while the clients still hold their connections open
            owners = _connection_owners(pids)
            for response in responses:
                _, port = response.extensions["network_stream"].get_extra_info("client_addr")
                response.extensions["pid"] = owners[port]
        return responses
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))


async def _spread(clients: list[httpx.AsyncClient], url: str, pids: tuple[int, ...]) -> bool:
    """Open each client's one connection; true if every worker holds one of them."""
    health = url.removesuffix("/v1") + "/health"
    replies = await asyncio.gather(*(client.get(health) for client in clients))
    owners = _connection_owners(pids)
    ports = {r.extensions["network_stream"].get_extra_info("client_addr")[1] for r in replies}
    return {owners.get(port) for port in ports} == set(pids)


def _connection_owners(pids: tuple[int, ...]) -> dict[int, int]:
    """Client port → pid of the process holding the server end of that TCP connection."""
    inodes: dict[str, int] = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            if match := re.fullmatch(r"socket:\[(\d+)\]", fd.readlink().name):
                inodes[match[1]] = pid
    owners: dict[int, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port, inode = int(fields[2].split(":")[1], 16), fields[9]
        if inode in inodes:
            owners[remote_port] = inodes[inode]
    return owners


def _worker_pids(service: Service) -> tuple[int, ...]:
    """The pids of the workers the supervisor started, once there are two."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = re.findall(r"worker \d+ started \(pid (\d+)\)", service.output())
        if len(pids) == 2:
            return tuple(int(pid) for pid in pids)
        time.sleep(0.1)
    raise AssertionError("the workers did not start")


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
    responses = asyncio.run(_burst([single.base_url], secret, 6, model="slow-first-2000"))
    statuses = Counter(r.status_code for r in responses)
    assert statuses[200] == 2 and statuses[429] == 4
    # Slots come back when requests finish (each takes 2 s, longer than the burst).
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


@pytest.fixture(scope="module")
def two_workers(
    tmp_path_factory, fake_upstream: Service
) -> Iterator[tuple[Service, tuple[int, ...]]]:
    """One gateway of two workers on SQLite, without Redis."""
    workdir = tmp_path_factory.mktemp("workers")
    config = _config(fake_upstream, str(workdir / "gw.db"), None) | {"server": {"workers": 2}}
    service = start_gateway(workdir, config)
    yield service, _worker_pids(service)
    stop(service.process)


def test_two_workers_share_an_exact_rpm_through_the_database(two_workers):
    service, pids = two_workers
    secret = _new_key(service, rpm=30)
    responses = asyncio.run(_burst([service.base_url], secret, 120, pids=pids))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 30, 429: 90}
    # Both workers answered and admitted: alone, each would have admitted up to 30.
    served = Counter(r.extensions["pid"] for r in responses)
    admitted = Counter(r.extensions["pid"] for r in responses if r.status_code == 200)
    # The kernel decides which worker accepts a connection: when both did, both admitted.
    assert set(admitted) <= set(served) <= set(pids), (served, admitted)
    refused = next(r for r in responses if r.status_code == 429)
    assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_two_workers_share_max_concurrent(two_workers):
    service, pids = two_workers
    secret = _new_key(service, max_concurrent=2)
    responses = asyncio.run(_burst([service.base_url], secret, 20, "slow-first-2000", pids))
    assert Counter(r.status_code for r in responses) == {200: 2, 429: 18}
    assert set(Counter(r.extensions["pid"] for r in responses)) == set(pids)
    # Slots come back when requests finish (each takes 2 s, longer than the burst).
    assert asyncio.run(_burst([service.base_url], secret, 1))[0].status_code == 200


def test_two_workers_share_tpm(two_workers):
    service, pids = two_workers
    secret = _new_key(service, tpm=100)
    body = {"model": "slow-first-2000", "messages": MESSAGES}
    reserved = len(httpx.Request("POST", service.url, json=body).content) // 4  # the estimate
    responses = asyncio.run(_burst([service.base_url], secret, 20, "slow-first-2000", pids))
    admitted = 100 // reserved  # none settles before the burst is refused
    assert Counter(r.status_code for r in responses) == {200: admitted, 429: 20 - admitted}
    assert set(Counter(r.extensions["pid"] for r in responses)) == set(pids)
    # Each settled at its real 44 tokens, at whichever worker ran it.
    (refused,) = asyncio.run(_burst([service.base_url], secret, 1))
    assert f"limit 100, used {44 * admitted}," in refused.json()["error"]["message"]
