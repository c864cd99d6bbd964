"""Limits shared by the processes of one database, for several workers without Redis: one
transaction per acquire and one per settle.

An acquire holds its key exclusively from the moment it reads the clock: on SQLite the whole
database (BEGIN IMMEDIATE, see `store.serial`), on PostgreSQL a transaction-scoped
advisory lock on the key. It then applies the same rule as the other backends
(`rules.py`) to the key's rows of the last window. Times are epoch seconds from each
process's clock, which on one machine is the same clock. Each acquire also deletes a few
rows that count for nothing any more, of any key, so the table stays bounded by the
requests of the last window plus those still running.

When the database cannot be reached we fail open, as with Redis (see `shared.Outage`).
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import Connection, delete, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from savegate.limits.rate import rules
from savegate.limits.rate.model import WINDOW, Decision, Grant, RateLimits
from savegate.limits.rate.shared import OPEN, Outage, Settler
from savegate.store.engine import AsyncEngine
from savegate.store.serial import Serial
from savegate.store.tables import rate_permits

logger = logging.getLogger(__name__)

_ERRORS = (SQLAlchemyError, OSError)
_PRUNE_PER_CALL = 8  # more than the one row an acquire adds, so the table cannot grow
_LOCK_CLASS = 0x5A7E  # the first key of our advisory locks; the second hashes the key id

_t = rate_permits.c


class _Reserved(NamedTuple):
    at: float
    tokens: int


@dataclass(slots=True)
class _Log:
    requests: list[float] = field(default_factory=list)
    reservations: list[_Reserved] = field(default_factory=list)
    tokens: int = 0
    in_flight: int = 0


class DatabaseBackend:
    def __init__(
        self, engine: AsyncEngine, *, window: float = WINDOW, lease: float = 600.0
    ) -> None:
        """`window` is what rpm and tpm count over: a minute, shorter only in tests. `lease`
        bounds how long a slot outlives a process that died holding it; keep it above the
        longest request."""
        self._serial = Serial(engine)
        self._postgres = engine.url.get_backend_name() == "postgresql"
        self._window = window
        self._lease = lease
        self._outage = Outage(logger, "the database", "database")
        self._settler = Settler(self._settle_now)

    async def acquire(self, key_id: str, limits: RateLimits, tokens: int) -> Decision:
        self._settler.bind()
        if self._outage.ongoing:
            return OPEN
        try:
            return await self._serial.run(lambda c: self._acquire(c, key_id, limits, tokens))
        except _ERRORS as exc:
            self._outage.failed(exc)
            return OPEN

    def _acquire(
        self, connection: Connection, key_id: str, limits: RateLimits, tokens: int
    ) -> Decision:
        if self._postgres:
            lock = func.pg_advisory_xact_lock(_LOCK_CLASS, func.hashtext(key_id))
            connection.execute(select(lock))
        now = time.time()  # with the key held, so that its rows are admitted in time order
        cutoff = now - self._window
        self._prune(connection, now, cutoff)
        log = self._log(connection, key_id, now, cutoff)
        refused = rules.refusal(log, limits, tokens, now, self._window)
        if refused is not None:
            tripped, wait = refused
            return Decision(rules.usage(log, now, self._window), tripped=tripped, retry_after=wait)
        row: dict[str, Any] = {
            "id": secrets.token_hex(8),
            "key_id": key_id,
            "admitted_at": now,
            "request": limits.rpm is not None,
            "tokens": None,
            "lease_until": None,
        }
        if limits.rpm is not None:
            log.requests.append(now)
        if limits.tpm is not None:
            row["tokens"] = tokens
            log.reservations.append(_Reserved(now, tokens))
            log.tokens += tokens
        if limits.max_concurrent is not None:
            row["lease_until"] = now + self._lease
            log.in_flight += 1
        connection.execute(rate_permits.insert().values(row))
        grant = rules.grant(key_id, row["id"], limits, tokens)
        return Decision(rules.usage(log, now, self._window), grant=grant)

    @staticmethod
    def _prune(connection: Connection, now: float, cutoff: float) -> None:
        """Delete the oldest rows that no longer count; rows another transaction has locked
        (PostgreSQL) are left for later rather than waited for."""
        stale = (
            select(_t.id)
            .where(_t.admitted_at <= cutoff, or_(_t.lease_until.is_(None), _t.lease_until <= now))
            .order_by(_t.admitted_at)
            .limit(_PRUNE_PER_CALL)
            .with_for_update(skip_locked=True)
        )
        connection.execute(delete(rate_permits).where(_t.id.in_(stale)))

    @staticmethod
    def _log(connection: Connection, key_id: str, now: float, cutoff: float) -> _Log:
        query = (
            select(_t.admitted_at, _t.request, _t.tokens, _t.lease_until)
            .where(_t.key_id == key_id, or_(_t.admitted_at > cutoff, _t.lease_until > now))
            .order_by(_t.admitted_at)
        )
        log = _Log()
        for at, request, tokens, lease_until in connection.execute(query):
            if lease_until is not None and lease_until > now:
                log.in_flight += 1
            if at <= cutoff:
                continue  # running for longer than the window: it holds only its slot
            if request:
                log.requests.append(at)
            if tokens is not None:
                log.reservations.append(_Reserved(at, tokens))
                log.tokens += tokens
        return log

    async def settle(self, grant: Grant, actual_tokens: int) -> None:
        await self._settler.settle(grant, actual_tokens)

    def abandon(self, grant: Grant) -> None:
        self._settler.abandon(grant)

    async def _settle_now(self, grant: Grant, actual_tokens: int) -> None:
        # A row already pruned (out of the window, lease over) is simply not found.
        values: dict[str, Any] = {}
        if grant.reserved_tokens is not None:
            values["tokens"] = actual_tokens
        if grant.holds_slot:
            values["lease_until"] = None
        statement = update(rate_permits).where(_t.id == grant.permit_id).values(values)
        try:
            await self._serial.run(lambda c: c.execute(statement))
        except _ERRORS as exc:
            self._outage.failed(exc)

    async def aclose(self) -> None:
        await self._settler.aclose()
        await self._serial.aclose()
