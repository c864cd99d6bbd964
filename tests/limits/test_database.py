"""What only the database backend has: processes sharing it, leases, a bounded table,
outages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from savegate.limits.rate import DatabaseBackend, RateLimited, RateLimiter, RateLimits
from savegate.store.db import create_engine
from tests.conftest import free_port
from tests.limits.conftest import database_limiter, hammer, schema
from tests.stores import query


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with schema(request.param, tmp_path) as url:
        yield url


def test_processes_sharing_the_database_admit_rpm_in_total(url: str) -> None:
    assert sum(hammer("database", url)) == 50


def test_lease_frees_the_slot_of_a_dead_process(url: str) -> None:
    async def go() -> None:
        dead = database_limiter(url, lease=0.3)
        limits = RateLimits(max_concurrent=1)
        held = await dead.acquire("k", limits, 0)  # never settled: its process "died"
        with pytest.raises(RateLimited):
            await dead.acquire("k", limits, 0)
        await asyncio.sleep(0.35)
        permit = await dead.acquire("k", limits, 0)
        await held.settle(0)  # late settle of an expired lease changes nothing
        with pytest.raises(RateLimited):
            await dead.acquire("k", limits, 0)
        await permit.settle(0)
        await dead.aclose()

    asyncio.run(go())


def test_rows_that_count_for_nothing_are_pruned(url: str) -> None:
    async def go() -> None:
        limiter = database_limiter(url, window=0.3)
        limits = RateLimits(rpm=5, tpm=100, max_concurrent=2)
        busy = await limiter.acquire("busy", limits, 10)  # still running when the others age
        for i in range(300):
            permit = await limiter.acquire(f"key-{i}", limits, 10)
            await permit.settle(5)
        await asyncio.sleep(0.35)
        for _ in range(50):  # refusals prune too
            with contextlib.suppress(RateLimited):
                await limiter.acquire("hot", RateLimits(rpm=1), 0)
        rows = await asyncio.to_thread(query, url, "SELECT key_id FROM rate_permits")
        assert sorted(rows) == [("busy",), ("hot",)]  # "busy" still holds its slot
        await busy.settle(10)
        await limiter.aclose()

    asyncio.run(go())


def test_database_down_fails_open_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none")
        limiter = RateLimiter(DatabaseBackend(engine))
        limits = RateLimits(rpm=1, tpm=10, max_concurrent=1)
        began = time.monotonic()
        for _ in range(5):
            permit = await limiter.acquire("k", limits, 100)
            assert permit.headers() == {}
            await permit.settle(100)
        assert time.monotonic() - began < 1
        await limiter.aclose()
        await engine.dispose()

    logger = "savegate.limits.rate.database"
    with caplog.at_level(logging.WARNING, logger=logger):
        asyncio.run(go())
    warnings = [r for r in caplog.records if r.name == logger]
    assert len(warnings) == 1
    assert "the database unavailable" in warnings[0].getMessage()
