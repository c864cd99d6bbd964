"""Limits shared by every gateway process through one Redis: one script call per acquire and one
per settle, each atomic (see lua.py).

When Redis is unreachable we fail open: requests are admitted unlimited, with a warning logged
at most every 10 s. A rate limiter that turns its own outage into 500s would take the whole
gateway down with it; briefly unlimited keys are the lesser harm. The client reconnects by
itself on the next call after a pause, so nothing needs restarting when Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from savegate.limits.rate.lua import ACQUIRE, SETTLE
from savegate.limits.rate.model import (
    CONCURRENCY_RETRY,
    WINDOW,
    Decision,
    Grant,
    LimitName,
    RateLimits,
    Usage,
)
from savegate.limits.rate.throttle import Throttle

logger = logging.getLogger(__name__)

_TRIPS: dict[int, LimitName] = {1: "rpm", 2: "tpm", 3: "max_concurrent"}
_OPEN = Decision(usage=None)  # admitted without counting: Redis is down
_PAUSE = 1.0  # after a failure, fail open at once this long instead of waiting on timeouts


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _arg(limit: int | None) -> int:
    return -1 if limit is None else limit


class RedisBackend:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "savegate:rl:",
        window: float = WINDOW,
        lease: float = 600.0,
        timeout: float = 0.5,
        max_connections: int = 50,
    ) -> None:
        """`window` is what rpm and tpm count over: a minute, shorter only in tests. `lease`
        bounds how long a slot outlives a gateway that died holding it; keep it above
        the longest request. `timeout` bounds what an unreachable Redis adds to a request."""
        # A blocking pool queues bursts for a connection; the default pool raises beyond its
        # size, which would fail those requests open.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One immediate retry, for a pooled connection that Redis closed; the default
            # retries with backoff for seconds, and retrying a timeout could count twice.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._redis = Redis.from_pool(pool)
        self._acquire = self._redis.register_script(ACQUIRE)
        self._settle = self._redis.register_script(SETTLE)
        self._prefix = prefix
        self._window_ms = _ms(window)
        self._lease_ms = _ms(lease)
        self._down_until = 0.0
        self._warning = Throttle(10.0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._abandoned: set[asyncio.Task[None]] = set()

    def _keys(self, key_id: str) -> list[str]:
        base = f"{self._prefix}{{{key_id}}}"  # the braces make one hash tag per key id
        return [f"{base}:r", f"{base}:t", f"{base}:tv", f"{base}:c"]

    async def acquire(self, key_id: str, limits: RateLimits, tokens: int) -> Decision:
        self._loop = asyncio.get_running_loop()
        if time.monotonic() < self._down_until:
            return _OPEN
        permit_id = secrets.token_hex(8)
        args: list[int | str] = [
            self._window_ms,
            _arg(limits.rpm),
            _arg(limits.tpm),
            _arg(limits.max_concurrent),
            tokens,
            permit_id,
            self._lease_ms,
            _ms(CONCURRENCY_RETRY),
        ]
        try:
            reply = await self._acquire(keys=self._keys(key_id), args=args)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return _OPEN
        tripped, wait, requests, used, in_flight, requests_reset, tokens_reset = map(int, reply)
        usage = Usage(requests, used, in_flight, requests_reset / 1000, tokens_reset / 1000)
        if tripped:
            return Decision(usage, tripped=_TRIPS[tripped], retry_after=wait / 1000)
        reserved = tokens if limits.tpm is not None else None
        holds_slot = limits.max_concurrent is not None
        settles = reserved is not None or holds_slot
        grant = Grant(key_id, permit_id, reserved, holds_slot) if settles else None
        return Decision(usage, grant=grant)

    async def settle(self, grant: Grant, actual_tokens: int) -> None:
        # Tried even while paused: a dropped settle would hold its slot until the lease ends.
        keys = self._keys(grant.key_id)[2:]
        actual = actual_tokens if grant.reserved_tokens is not None else -1
        try:
            await self._settle(keys=keys, args=[grant.permit_id, actual, int(grant.holds_slot)])
        except (RedisError, OSError) as exc:
            self._failed(exc)

    def abandon(self, grant: Grant) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # the lease frees the slot
        loop.call_soon_threadsafe(self._settle_abandoned, grant)

    def _settle_abandoned(self, grant: Grant) -> None:
        task = asyncio.create_task(self.settle(grant, grant.reserved_tokens or 0))
        self._abandoned.add(task)  # keep a reference, or the task may be collected mid-way
        task.add_done_callback(self._abandoned.discard)

    async def aclose(self) -> None:
        await asyncio.gather(*self._abandoned)
        await self._redis.aclose()

    def _failed(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + _PAUSE
        if self._warning.ready():
            logger.warning("rate limits: Redis unavailable (%s); admitting requests unlimited", exc)
