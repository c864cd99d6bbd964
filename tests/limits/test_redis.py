"""What only the Redis backend has: many processes, outages, leases, keys that expire."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis.asyncio

from savegate.limits.rate import RateLimited, RateLimiter, RateLimits
from savegate.limits.rate.redis import RedisBackend
from tests.conftest import free_port
from tests.limits.conftest import REDIS_TIMEOUT, REDIS_URL, hammer


def test_processes_sharing_redis_admit_rpm_in_total(redis_prefix: str) -> None:
    assert sum(hammer("redis", REDIS_URL, redis_prefix)) == 50  # the log is exact


def test_redis_down_fails_open_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        limiter = RateLimiter(RedisBackend(f"redis://127.0.0.1:{free_port()}"))
        limits = RateLimits(rpm=1, tpm=10, max_concurrent=1)
        began = time.monotonic()
        for _ in range(5):
            permit = await limiter.acquire("k", limits, 100)
            assert permit.headers() == {}
            await permit.settle(100)
        assert time.monotonic() - began < 1
        await limiter.aclose()

    with caplog.at_level(logging.WARNING, logger="savegate.limits.rate.redis"):
        asyncio.run(go())
    warnings = [r for r in caplog.records if r.name == "savegate.limits.rate.redis"]
    assert len(warnings) == 1
    assert "admitting requests unlimited" in warnings[0].getMessage()


class Proxy:
    """A TCP relay to Redis that can be cut and restored on the same port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self._writers += [writer, upstream_writer]
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


def test_reconnects_after_an_outage(redis_prefix: str) -> None:
    async def go() -> None:
        proxy = Proxy(free_port())
        await proxy.start()
        limiter = RateLimiter(RedisBackend(f"redis://127.0.0.1:{proxy.port}", prefix=redis_prefix))
        limits = RateLimits(rpm=2)
        await limiter.acquire("k", limits, 0)
        await limiter.acquire("k", limits, 0)
        with pytest.raises(RateLimited):
            await limiter.acquire("k", limits, 0)
        await proxy.stop()
        await limiter.acquire("k", limits, 0)  # down: admitted, uncounted
        await proxy.start()
        await asyncio.sleep(1.1)  # the backend's pause after a failure
        with pytest.raises(RateLimited):  # counting again, with the state Redis kept
            await limiter.acquire("k", limits, 0)
        await limiter.aclose()
        await proxy.stop()

    asyncio.run(go())


def test_lease_frees_the_slot_of_a_dead_gateway(redis_prefix: str) -> None:
    async def go() -> None:
        dead = RateLimiter(
            RedisBackend(REDIS_URL, prefix=redis_prefix, lease=0.3, timeout=REDIS_TIMEOUT)
        )
        limits = RateLimits(max_concurrent=1)
        held = await dead.acquire("k", limits, 0)  # never settled: its gateway "died"
        with pytest.raises(RateLimited):
            await dead.acquire("k", limits, 0)
        await asyncio.sleep(0.35)
        permit = await dead.acquire("k", limits, 0)
        await permit.settle(0)
        await held.settle(0)  # late settle of an expired lease changes nothing
        await dead.aclose()

    asyncio.run(go())


def test_keys_expire_on_their_own(redis_prefix: str) -> None:
    async def go() -> None:
        limiter = RateLimiter(
            RedisBackend(REDIS_URL, prefix=redis_prefix, lease=120, timeout=REDIS_TIMEOUT)
        )
        permit = await limiter.acquire("k", RateLimits(rpm=5, tpm=500, max_concurrent=2), 100)
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
        ttls = {key.decode().rsplit(":", 1)[1]: await client.pttl(key) for key in keys}
        assert set(ttls) == {"r", "t", "tv", "c"}
        assert all(0 < ttl <= 60_000 for name, ttl in ttls.items() if name != "c")
        assert 60_000 < ttls["c"] <= 120_000
        await permit.settle(10)
        await client.aclose()
        await limiter.aclose()

    asyncio.run(go())
