"""Each test runs against both backends; Redis ones use a fresh key prefix, deleted afterwards."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
import redis

from savegate.limits.rate import MemoryBackend, RateLimiter
from savegate.limits.rate.model import WINDOW
from savegate.limits.rate.redis import RedisBackend

REDIS_URL = "redis://127.0.0.1:6379/0"

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


@pytest.fixture(params=["memory", "redis"])
def make_limiter(request: pytest.FixtureRequest) -> MakeLimiter:
    """Builds a limiter (call it inside the test's event loop) with an optional short window."""
    if request.param == "memory":
        return lambda window=WINDOW: RateLimiter(MemoryBackend(window=window))
    prefix = request.getfixturevalue("redis_prefix")
    return lambda window=WINDOW: RateLimiter(RedisBackend(REDIS_URL, prefix=prefix, window=window))
