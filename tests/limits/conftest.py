"""Each test runs against every backend: memory, Redis (a fresh key prefix, deleted
afterwards) and the database (a fresh SQLite or PostgreSQL database)."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from savegate.limits.rate import DatabaseBackend, MemoryBackend, RateLimiter
from savegate.limits.rate.model import WINDOW
from savegate.limits.rate.redis import RedisBackend
from savegate.store.db import create_engine, create_schema
from tests.conftest import ROOT
from tests.stores import database

REDIS_URL = "redis://127.0.0.1:6379/0"
# A loaded CI host can stall a burst's connects past the gateway's 0.5 s, which fails open;
# these cases count, and test_redis.py's own limiters test the timeout.
REDIS_TIMEOUT = 5.0

MakeLimiter = Callable[..., RateLimiter]


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    prefix = f"savegate-test:{secrets.token_hex(6)}:"
    yield prefix
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@contextmanager
def schema(backend: str, workdir: Path) -> Iterator[str]:
    """A fresh database on `backend` with the gateway's schema."""
    with database(backend, workdir) as url:
        engine = create_engine(url)
        asyncio.run(create_schema(engine))
        asyncio.run(engine.dispose())
        yield url


def database_limiter(url: str, **options: float) -> RateLimiter:
    """A limiter on the database at `url` (call it inside the test's event loop); its engine
    is disposed when the limiter is closed."""
    engine = create_engine(url)
    backend = DatabaseBackend(engine, **options)

    class Closing(RateLimiter):
        async def aclose(self) -> None:
            await super().aclose()
            await engine.dispose()

    return Closing(backend)


@pytest.fixture(params=["memory", "redis", "sqlite", "postgres"])
def make_limiter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeLimiter]:
    """Builds a limiter (call it inside the test's event loop) with an optional short window."""
    if request.param == "memory":
        yield lambda window=WINDOW: RateLimiter(MemoryBackend(window=window))
    elif request.param == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        yield lambda window=WINDOW: RateLimiter(
            RedisBackend(REDIS_URL, prefix=prefix, window=window, timeout=REDIS_TIMEOUT)
        )
    else:
        with schema(request.param, tmp_path) as url:
            yield lambda window=WINDOW: database_limiter(url, window=window)


def hammer(backend: str, url: str, prefix: str = "") -> list[int]:
    """What each of two processes hammering one key (rpm 50) for 1.5 s was admitted."""
    start = time.time() + 1.5  # both start at this moment
    args = [sys.executable, "-m", "tests.limits.hammer", backend, url, prefix, str(start), "1.5"]
    processes = [
        subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    counts = [int(process.communicate(timeout=20)[0]) for process in processes]
    assert all(process.returncode == 0 for process in processes)
    return counts
