"""A ledger every process shares, over a `LedgerStore` (Redis or the database).

Limits come with each call from the key, so a limit changed anywhere applies as soon as
the key is. Each hold has a lease, so a process that dies holding one blocks nothing for
long. When the store has lost a month (Redis restarted or was flushed), one process
rebuilds it from the usage table: it waits until every process has written what it had
buffered, then loads the month less the requests already settled in the new state.
Meanwhile every process registers its running holds again: each looks at the months it
holds something in three times per wait, so none is missed when reservations resume.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from savegate.core.faults import store_failed
from savegate.core.keys import ApiKey
from savegate.limits.ledger.base import (
    Alert,
    LedgerUnavailable,
    Limits,
    Reservation,
    UsageLoader,
    limited,
    month_start,
    raise_alerts,
    refusal,
)
from savegate.limits.ledger.store import LedgerStore, Reply
from savegate.limits.rate.throttle import Throttle

log = logging.getLogger(__name__)

Month = tuple[str, datetime]
_POLL = 0.05  # how often a reservation looks again at a month being loaded


class SharedLedger:
    def __init__(
        self,
        store: LedgerStore,
        load: UsageLoader,
        alert: Alert,
        *,
        lease: float,
        rebuild_wait: float,
    ) -> None:
        """`lease`: how long a hold outlives a process that died (above the longest
        request). `rebuild_wait`: how long every process may take to write its buffered
        usage."""
        self._store = store
        self._load = load
        self._alert = alert
        self._lease = lease
        self._wait = rebuild_wait
        self._errors = store.errors
        self._settle_errors: tuple[type[BaseException], ...] = (LedgerUnavailable, *store.errors)
        self._gens: dict[Month, str] = {}
        self._holds: dict[Month, dict[str, Reservation]] = {}
        self._loaders: set[asyncio.Task[None]] = set()
        self._settling: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False
        self._warning = Throttle(10.0)

    async def reserve(self, key: ApiKey, tokens: int, cost: float) -> Reservation | None:
        if not limited(key):
            return None
        period = month_start(datetime.now(UTC))
        hold = Reservation(secrets.token_hex(8), key.id, period, tokens, cost)
        limits = Limits.of(key)
        try:
            reply = await self._until_ok(
                hold, lambda gen: self._store.reserve(hold, gen, limits, self._lease), wait=True
            )
        except self._errors as exc:
            store_failed(self._store.kind, "budgets")
            raise LedgerUnavailable(f"Budgets cannot be checked just now ({exc}).") from exc
        if reply.over is not None:
            raise refusal(reply.over, limits, reply.balance)
        self._holds.setdefault((key.id, period), {})[hold.id] = hold
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch())
        return hold

    async def settle(
        self, reservation: Reservation, key: ApiKey, tokens: int, cost: float, request_id: str
    ) -> None:
        # Shielded: a request cancelled mid-way (its client left) still frees its hold.
        task = asyncio.create_task(self._settle(reservation, key, tokens, cost, request_id))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        await asyncio.shield(task)

    async def _settle(
        self, reservation: Reservation, key: ApiKey, tokens: int, cost: float, request_id: str
    ) -> None:
        month = (key.id, reservation.period)
        try:
            reply = await self._until_ok(
                reservation,
                lambda gen: self._store.settle(reservation, gen, tokens, cost, request_id),
                wait=False,
            )
        except self._settle_errors as exc:
            store_failed(self._store.kind, "budgets")
            log.warning("budgets: could not settle for key %s (%s)", key.id, exc)
            return  # the hold ends with its lease; the usage table still has the row
        finally:
            self._holds.get(month, {}).pop(reservation.id, None)
        if not reply.partial:
            raise_alerts(key, reply.balance, reply.after, self._alert)

    async def _until_ok(
        self, hold: Reservation, call: Callable[[str], Awaitable[Reply]], *, wait: bool
    ) -> Reply:
        """Runs `call` with the month's generation until the month is there and current."""
        month = (hold.key_id, hold.period)
        deadline = time.monotonic() + self._wait + 30
        while time.monotonic() < deadline:
            reply = await call(self._gens.get(month, ""))
            if reply.status in ("ok", "over"):
                return reply
            if reply.status == "absent":
                await self._rebuild(month)
            elif reply.status == "stale":
                await self._adopt(month)
            elif wait:  # loading: settlements go on, reservations wait
                await asyncio.sleep(_POLL)
        raise LedgerUnavailable("The budget ledger is still being rebuilt; try again shortly.")

    async def _adopt(self, month: Month) -> None:
        holds = list(self._holds.get(month, {}).values())
        reply = await self._store.adopt(*month, holds, self._lease)
        if reply.status == "absent":
            await self._rebuild(month)
        else:
            self._gens[month] = reply.gen

    async def _watch(self) -> None:
        """Keeps the running holds of this process in the store, whatever it lost. Ends
        when closed even if its cancellation was lost (a Redis client's timeout firing as
        it came turns it into a timeout, which this loop survives)."""
        while not self._closed:
            await asyncio.sleep(self._wait / 3)
            for month, holds in list(self._holds.items()):
                if not holds:
                    del self._holds[month]
                    continue
                try:
                    await self._adopt(month)
                except self._errors as exc:
                    store_failed(self._store.kind, "budgets")
                    if self._warning.ready():
                        log.warning("budgets: could not register holds (%s)", exc)

    async def _rebuild(self, month: Month) -> None:
        gen, loader = secrets.token_hex(8), secrets.token_hex(8)
        holds = list(self._holds.get(month, {}).values())
        claim = await self._store.claim(*month, gen, loader, holds, self._lease, self._wait + 20)
        self._gens[month] = claim.gen
        if claim.claimed:
            task = asyncio.create_task(self._reload(month, loader))
            self._loaders.add(task)  # a reference, or the task may be collected mid-way
            task.add_done_callback(self._loaders.discard)

    async def _reload(self, month: Month, loader: str) -> None:
        await asyncio.sleep(self._wait)
        try:
            while True:
                settled = await self._store.settled_while_loading(*month)
                tokens, spend = await self._load(*month, settled)
                done = await self._store.loaded(*month, loader, len(settled), tokens, spend)
                if done == "done":
                    log.info("budgets: month of key %s reloaded from the usage table", month[0])
                if done != "again":
                    return
        except Exception as exc:  # another process takes over once the claim runs out
            log.warning("budgets: could not reload key %s (%s)", month[0], exc)

    async def forget(self, key_id: str) -> None:
        await self._store.forget(key_id, month_start(datetime.now(UTC)))

    async def aclose(self) -> None:
        self._closed = True
        tasks = [*self._loaders, *([self._watcher] if self._watcher else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._settling, return_exceptions=True)
        await self._store.aclose()
