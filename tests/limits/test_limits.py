"""The same cases against every backend (in-process, Redis, SQLite, PostgreSQL): they must
agree exactly."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable

import pytest

from savegate.limits.rate import Permit, RateLimited, RateLimits
from tests.limits.conftest import MakeLimiter


async def refused(attempt: Awaitable[Permit]) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        await attempt
    return caught.value


def test_rpm_is_exact_under_concurrency(make_limiter: MakeLimiter) -> None:
    async def go() -> None:
        limiter = make_limiter()
        limits = RateLimits(rpm=50)
        started = time.monotonic()
        results = await asyncio.gather(
            *(limiter.acquire("k", limits, 0) for _ in range(200)), return_exceptions=True
        )
        took = time.monotonic() - started
        admitted = [r for r in results if isinstance(r, Permit)]
        refusals = [r for r in results if isinstance(r, RateLimited)]
        assert (len(admitted), len(refusals)) == (50, 150)
        assert {r.limit for r in refusals} == {"rpm"}
        # The oldest admission leaves the window 60 s after it came, less the burst's time.
        assert all(60 - took - 0.5 < r.retry_after <= 60 for r in refusals)
        assert refusals[0].message.startswith(
            "Rate limit reached for requests per minute (rpm): limit 50, used 50."
        )
        other = await limiter.acquire("other", limits, 0)  # keys are independent
        assert other.headers()["x-ratelimit-remaining-requests"] == "49"
        await limiter.aclose()

    asyncio.run(go())


def test_window_slides(make_limiter: MakeLimiter) -> None:
    """Requests leave the count one by one as they age, not at a fixed boundary."""

    async def go() -> None:
        limiter = make_limiter(window=1.0)
        limits = RateLimits(rpm=3)
        await limiter.acquire("k", limits, 0)
        await limiter.acquire("k", limits, 0)
        await asyncio.sleep(0.5)
        await limiter.acquire("k", limits, 0)
        first = await refused(limiter.acquire("k", limits, 0))
        assert 0 < first.retry_after <= 0.5  # the oldest leaves, not a whole window
        await asyncio.sleep(first.retry_after + 0.05)
        await limiter.acquire("k", limits, 0)  # the two oldest have left, the third has not
        await limiter.acquire("k", limits, 0)
        second = await refused(limiter.acquire("k", limits, 0))
        assert 0 < second.retry_after <= 0.5
        await limiter.aclose()

    asyncio.run(go())


def test_tpm_reserves_then_settles(make_limiter: MakeLimiter) -> None:
    async def go() -> None:
        limiter = make_limiter()
        limits = RateLimits(tpm=1000)
        permit = await limiter.acquire("k", limits, 1000)
        error = await refused(limiter.acquire("k", limits, 1))
        assert error.limit == "tpm"
        assert 58 < error.retry_after <= 60
        assert "limit 1000, used 1000, requested 1." in error.message
        await permit.settle(10)
        await permit.settle(900)  # settles once; later calls change nothing
        second = await limiter.acquire("k", limits, 990)
        assert second.headers()["x-ratelimit-remaining-tokens"] == "0"
        await refused(limiter.acquire("k", limits, 1))
        await second.settle(0)
        third = await limiter.acquire("k", limits, 990)
        await third.settle(990)
        too_large = await refused(limiter.acquire("fresh", limits, 2000))
        assert too_large.message.startswith(
            "Request too large for tokens per minute (tpm): limit 1000, requested 2000."
        )
        await limiter.aclose()

    asyncio.run(go())


def test_tpm_retry_after_waits_for_enough_tokens(make_limiter: MakeLimiter) -> None:
    async def go() -> None:
        limiter = make_limiter(window=1.0)
        limits = RateLimits(tpm=100)
        await limiter.acquire("k", limits, 30)
        await asyncio.sleep(0.3)
        await limiter.acquire("k", limits, 70)
        # 50 more need both reservations gone: the newer leaves 0.3 s after the older.
        error = await refused(limiter.acquire("k", limits, 50))
        assert 0.7 < error.retry_after <= 1.0
        small = await refused(limiter.acquire("k", limits, 20))
        assert 0 < small.retry_after <= 0.7
        assert error.retry_after - small.retry_after > 0.25  # the 0.3 s between the two
        await limiter.aclose()

    asyncio.run(go())


def test_max_concurrent_slots_come_back(make_limiter: MakeLimiter) -> None:
    async def go() -> None:
        limiter = make_limiter()
        limits = RateLimits(max_concurrent=2)
        first = await limiter.acquire("k", limits, 0)
        second = await limiter.acquire("k", limits, 0)
        error = await refused(limiter.acquire("k", limits, 0))
        assert (error.limit, error.retry_after) == ("max_concurrent", 1.0)
        await first.settle(0)
        await first.settle(0)  # idempotent: must not free a second slot
        third = await limiter.acquire("k", limits, 0)
        await refused(limiter.acquire("k", limits, 0))
        await second.settle(0)
        with pytest.raises(RuntimeError):
            async with await limiter.acquire("k", limits, 0):
                raise RuntimeError("the upstream failed")
        async with await limiter.acquire("k", limits, 0):
            await refused(limiter.acquire("k", limits, 0))
        await third.settle(0)
        await limiter.aclose()

    asyncio.run(go())


def test_forgotten_permit_is_released(make_limiter: MakeLimiter) -> None:
    async def go() -> None:
        limiter = make_limiter()
        limits = RateLimits(max_concurrent=1, tpm=100)
        permit = await limiter.acquire("k", limits, 60)
        del permit
        gc.collect()
        await asyncio.sleep(0.05)  # Redis settles from a task
        again = await limiter.acquire("k", limits, 40)  # the slot is back,
        error = await refused(limiter.acquire("k", RateLimits(tpm=100), 1))
        assert error.limit == "tpm"  # and the reservation kept: 60 + 40 of 100
        await again.settle(40)
        await limiter.aclose()

    asyncio.run(go())


def test_a_settle_cancelled_midway_still_frees_the_slot(make_limiter: MakeLimiter) -> None:
    async def go() -> None:
        limiter = make_limiter()
        limits = RateLimits(max_concurrent=1)
        permit = await limiter.acquire("k", limits, 0)
        settling = asyncio.create_task(permit.settle(0))
        await asyncio.sleep(0)  # under way: the client went away meanwhile
        settling.cancel()
        await asyncio.sleep(0.05)
        again = await limiter.acquire("k", limits, 0)
        await again.settle(0)
        await limiter.aclose()

    asyncio.run(go())


def test_headers_for_admitted_requests(make_limiter: MakeLimiter) -> None:
    async def go() -> None:
        limiter = make_limiter()
        permit = await limiter.acquire("k", RateLimits(rpm=60, tpm=1000), 100)
        assert permit.headers() == {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "59",
            "x-ratelimit-reset-requests": "1m0s",
            "x-ratelimit-limit-tokens": "1000",
            "x-ratelimit-remaining-tokens": "900",
            "x-ratelimit-reset-tokens": "1m0s",
        }
        await permit.settle(50)
        unlimited = await limiter.acquire("k", RateLimits(), 100)
        assert unlimited.headers() == {}
        await unlimited.settle(100)
        error = await refused(limiter.acquire("k", RateLimits(rpm=1), 0))
        assert error.headers["x-ratelimit-remaining-requests"] == "0"
        assert error.headers["retry-after"] == "60"
        await limiter.aclose()

    asyncio.run(go())
