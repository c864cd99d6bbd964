"""What the backends that several processes share (Redis, the database) have in common:
settles that survive their caller, and failing open through an outage."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from savegate.core.faults import store_failed
from savegate.limits.rate.model import Decision, Grant
from savegate.limits.rate.throttle import Throttle

OPEN = Decision(usage=None)  # admitted without counting: the store is down
_PAUSE = 1.0  # after a failure, fail open at once this long instead of waiting on timeouts

Settle = Callable[[Grant, int], Coroutine[Any, Any, None]]


class Settler:
    """Runs settles as tasks: shielded, so that a request cancelled mid-settle (its client
    left) still frees its slot, and startable from a finalizer, which may run on any thread
    and must neither block nor raise. `settle` itself must not raise."""

    def __init__(self, settle: Settle) -> None:
        self._settle = settle
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def bind(self) -> None:
        """Remember the loop that grants run on (call it on acquire)."""
        self._loop = asyncio.get_running_loop()

    async def settle(self, grant: Grant, actual_tokens: int) -> None:
        await asyncio.shield(self._start(grant, actual_tokens))

    def abandon(self, grant: Grant) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # the lease frees the slot
        with contextlib.suppress(RuntimeError):  # the loop closed since
            loop.call_soon_threadsafe(self._start, grant, grant.reserved_tokens or 0)

    def _start(self, grant: Grant, actual_tokens: int) -> asyncio.Task[None]:
        task = asyncio.create_task(self._settle(grant, actual_tokens))
        self._tasks.add(task)  # keep a reference, or the task may be collected mid-way
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        await asyncio.gather(*self._tasks)


class Outage:
    """Admit unlimited for a pause after a failure, with a warning at most every 10 s. A rate
    limiter that turned its store's outage into 500s would take the gateway down with it;
    briefly unlimited keys are the lesser harm."""

    def __init__(self, logger: logging.Logger, store: str, kind: str) -> None:
        self._logger = logger
        self._store = store
        self._kind = kind  # "redis" or "database", for the error metrics
        self._until = 0.0
        self._warning = Throttle(10.0)

    @property
    def ongoing(self) -> bool:
        return time.monotonic() < self._until

    def failed(self, exc: BaseException) -> None:
        store_failed(self._kind, "rate_limits")
        self._until = time.monotonic() + _PAUSE
        if self._warning.ready():
            self._logger.warning(
                "rate limits: %s unavailable (%s); admitting requests unlimited", self._store, exc
            )
