"""Limits shared by every gateway process through one Redis: one script call per acquire and one
per settle, each atomic (see lua.py).

When Redis is unreachable we fail open (see `shared.Outage`). The client reconnects by itself
on the next call after a pause, so nothing needs restarting when Redis is back.
"""

from __future__ import annotations

import logging
import secrets

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from savegate.limits.rate import rules
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
from savegate.limits.rate.shared import OPEN, Outage, Settler

logger = logging.getLogger(__name__)

_TRIPS: dict[int, LimitName] = {1: "rpm", 2: "tpm", 3: "max_concurrent"}


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
        self._outage = Outage(logger, "Redis", "redis")
        self._settler = Settler(self._settle_now)

    def _keys(self, key_id: str) -> list[str]:
        base = f"{self._prefix}{{{key_id}}}"  # the braces make one hash tag per key id
        return [f"{base}:r", f"{base}:t", f"{base}:tv", f"{base}:c"]

    async def acquire(self, key_id: str, limits: RateLimits, tokens: int) -> Decision:
        self._settler.bind()
        if self._outage.ongoing:
            return OPEN
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
            self._outage.failed(exc)
            return OPEN
        tripped, wait, requests, used, in_flight, requests_reset, tokens_reset = map(int, reply)
        usage = Usage(requests, used, in_flight, requests_reset / 1000, tokens_reset / 1000)
        if tripped:
            return Decision(usage, tripped=_TRIPS[tripped], retry_after=wait / 1000)
        return Decision(usage, grant=rules.grant(key_id, permit_id, limits, tokens))

    async def settle(self, grant: Grant, actual_tokens: int) -> None:
        await self._settler.settle(grant, actual_tokens)

    def abandon(self, grant: Grant) -> None:
        self._settler.abandon(grant)

    async def _settle_now(self, grant: Grant, actual_tokens: int) -> None:
        # Tried even while paused: a dropped settle would hold its slot until the lease ends.
        keys = self._keys(grant.key_id)[2:]
        actual = actual_tokens if grant.reserved_tokens is not None else -1
        try:
            await self._settle(keys=keys, args=[grant.permit_id, actual, int(grant.holds_slot)])
        except (RedisError, OSError) as exc:
            self._outage.failed(exc)

    async def aclose(self) -> None:
        await self._settler.aclose()
        await self._redis.aclose()
