"""The store every worker and replica shares: one Redis key per answer, written with
`SET … PX ttl` so that Redis forgets it by itself; its total size is Redis' own
`maxmemory` to bound. A short lock key (`SET NX PX`) lets one process make the upstream
call that others, in other processes, wait for.

When Redis cannot be reached, the cache is bypassed (never a failed request) and not
asked again for a pause, so that requests do not each wait for a timeout.
"""

from __future__ import annotations

import logging
import time

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from savegate.cache.entry import CacheUnavailable, Entry

log = logging.getLogger(__name__)

_PAUSE = 1.0  # seconds the cache is bypassed at once after a failure
_WARN_EVERY = 10.0


class RedisCache:
    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        ttl: float,
        lock_seconds: float,
        timeout: float = 0.25,
        max_connections: int = 50,
    ) -> None:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        self._redis = Redis.from_pool(pool)
        self._prefix = prefix
        self._ttl_ms = max(1, round(ttl * 1000))
        self._lock_ms = max(1, round(lock_seconds * 1000))
        self._down_until = 0.0
        self._warned = 0.0

    def _failed(self, exc: BaseException) -> CacheUnavailable:
        now = time.monotonic()
        self._down_until = now + _PAUSE
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            log.warning("response cache: Redis unavailable (%s); requests go uncached", exc)
        return CacheUnavailable(str(exc))

    def _check(self) -> None:
        if time.monotonic() < self._down_until:
            raise CacheUnavailable("Redis was unavailable a moment ago")

    async def get(self, key: str) -> Entry | None:
        self._check()
        try:
            raw = await self._redis.get(self._prefix + key)
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from None
        if raw is None:
            return None
        return Entry.decode(raw if isinstance(raw, bytes) else raw.encode())

    async def put(self, key: str, entry: Entry, raw: bytes) -> None:
        self._check()
        try:
            await self._redis.set(self._prefix + key, raw, px=self._ttl_ms)
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from None

    async def claim(self, key: str) -> bool:
        self._check()
        try:
            claimed = await self._redis.set(
                self._prefix + "lock:" + key, b"1", nx=True, px=self._lock_ms
            )
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from None
        return bool(claimed)

    async def release(self, key: str) -> None:
        try:
            await self._redis.delete(self._prefix + "lock:" + key)
        except (RedisError, OSError) as exc:
            self._failed(exc)

    async def aclose(self) -> None:
        await self._redis.aclose()
