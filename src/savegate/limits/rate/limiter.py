"""The rate limiter the request path uses: acquire a permit, settle it when the request is done."""

from __future__ import annotations

import logging

from savegate.limits.rate.backend import RateBackend
from savegate.limits.rate.database import DatabaseBackend
from savegate.limits.rate.errors import RateLimited
from savegate.limits.rate.headers import rate_headers
from savegate.limits.rate.memory import MemoryBackend
from savegate.limits.rate.model import Grant, RateLimits, Usage
from savegate.limits.rate.throttle import Throttle
from savegate.store.engine import AsyncEngine

logger = logging.getLogger(__name__)
_leak_warning = Throttle(10.0)


class Permit:
    """An admitted request's hold on its key's limits.

    Settle it exactly once when the request is done, in a `finally` (streams finish long after
    the handler returns), or hold it with `async with permit:`, which settles on exit with the
    reservation kept, exception or not. Settling again is a no-op. A permit dropped unsettled
    is released by its finalizer, reservation kept, with a warning: a caller bug, but no slot
    is lost for good.
    """

    def __init__(
        self, backend: RateBackend, grant: Grant | None, limits: RateLimits, usage: Usage | None
    ) -> None:
        self._backend = backend
        self._grant = grant
        self._limits = limits
        self._usage = usage
        self._settled = False

    def headers(self) -> dict[str, str]:
        """x-ratelimit-* for the limits the key has, as of admission."""
        return rate_headers(self._limits, self._usage)

    async def settle(self, actual_tokens: int) -> None:
        """Replace the token reservation by the real count and free the concurrency slot."""
        if self._settled:
            return
        self._settled = True  # before awaiting, so a concurrent second call cannot release twice
        if self._grant is not None:
            await self._backend.settle(self._grant, max(0, actual_tokens))

    async def __aenter__(self) -> Permit:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # The real count is unknown here; keeping the reservation errs on the safe side.
        reserved = self._grant.reserved_tokens if self._grant is not None else None
        await self.settle(reserved or 0)

    def __del__(self) -> None:
        if self._settled or self._grant is None:
            return
        if _leak_warning.ready():
            logger.warning("rate limits: a permit was never settled (key %s)", self._grant.key_id)
        self._backend.abandon(self._grant)


class RateLimiter:
    def __init__(self, backend: RateBackend) -> None:
        self._backend = backend

    async def acquire(self, key_id: str, limits: RateLimits, estimated_tokens: int) -> Permit:
        """Admit one request, reserving `estimated_tokens` (an upper bound: prompt plus output
        limit) against tpm, or raise RateLimited."""
        if limits.unlimited:
            return Permit(self._backend, None, limits, None)
        tokens = max(0, estimated_tokens)
        decision = await self._backend.acquire(key_id, limits, tokens)
        if decision.tripped is not None:
            assert decision.usage is not None  # a refusal always comes with what was counted
            raise RateLimited(
                decision.tripped,
                decision.retry_after,
                limits=limits,
                usage=decision.usage,
                requested_tokens=tokens,
            )
        return Permit(self._backend, decision.grant, limits, decision.usage)

    async def aclose(self) -> None:
        await self._backend.aclose()


def create_rate_limiter(
    redis_url: str | None, prefix: str = "savegate:rl:", engine: AsyncEngine | None = None
) -> RateLimiter:
    """With a Redis URL, limits exact across all the processes that share that Redis and
    prefix; else, given the database engine (several processes share it), exact across the
    processes of that database; else in-process, exact for one gateway process."""
    if redis_url:
        # Imported here so that the redis package is needed only when Redis is configured.
        from savegate.limits.rate.redis import RedisBackend

        return RateLimiter(RedisBackend(redis_url, prefix=prefix))
    if engine is not None:
        return RateLimiter(DatabaseBackend(engine))
    return RateLimiter(MemoryBackend())
