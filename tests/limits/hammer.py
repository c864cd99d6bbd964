"""One process hammering one key for a while, from a given wall-clock moment; prints how many
requests it was admitted. `python -m tests.limits.hammer redis|database URL PREFIX START SECONDS`
"""

from __future__ import annotations

import asyncio
import sys
import time

from savegate.limits.rate import DatabaseBackend, RateBackend, RateLimited, RateLimiter, RateLimits
from savegate.limits.rate.redis import RedisBackend
from savegate.store.db import create_engine


async def main(backend: RateBackend, start: float, seconds: float) -> None:
    limiter = RateLimiter(backend)
    limits = RateLimits(rpm=50)
    admitted = 0
    await asyncio.sleep(max(0.0, start - time.time()))
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal admitted
        while time.monotonic() < deadline:
            try:
                await limiter.acquire("shared", limits, 0)
                admitted += 1
            except RateLimited:
                pass

    await asyncio.gather(*(worker() for _ in range(20)))
    await limiter.aclose()
    print(admitted)


def _backend(kind: str, url: str, prefix: str) -> RateBackend:
    if kind == "redis":
        return RedisBackend(url, prefix=prefix, timeout=5.0)  # see conftest.REDIS_TIMEOUT
    return DatabaseBackend(create_engine(url))


if __name__ == "__main__":
    kind, url, prefix, start, seconds = sys.argv[1:]
    asyncio.run(main(_backend(kind, url, prefix), float(start), float(seconds)))
