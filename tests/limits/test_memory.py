"""The in-process backend forgets idle keys, so memory follows active keys, not all keys."""

from __future__ import annotations

import asyncio
import contextlib

from savegate.limits.rate import MemoryBackend, RateLimited, RateLimiter, RateLimits


def test_idle_keys_are_evicted() -> None:
    async def go() -> None:
        backend = MemoryBackend(window=0.3)
        limiter = RateLimiter(backend)
        limits = RateLimits(rpm=5, tpm=100, max_concurrent=2)
        busy = await limiter.acquire("busy", limits, 10)  # still running when the others idle
        for i in range(5000):
            permit = await limiter.acquire(f"key-{i}", limits, 10)
            await permit.settle(5)
        await asyncio.sleep(0.35)
        hot = RateLimits(rpm=1)
        for _ in range(3000):
            with contextlib.suppress(RateLimited):
                await limiter.acquire("hot", hot, 0)
        assert len(backend) == 2  # "hot" and "busy"
        await busy.settle(10)
        again = await limiter.acquire("busy", RateLimits(max_concurrent=1), 0)
        await again.settle(0)
        await limiter.aclose()

    asyncio.run(go())
