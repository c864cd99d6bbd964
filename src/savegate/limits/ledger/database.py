"""The ledger's store in the gateway's own database, for several processes without Redis.

Each step is one transaction that holds the key's month exclusively: on SQLite the whole
database (BEGIN IMMEDIATE, see `store.serial`), on PostgreSQL the month's row
(SELECT … FOR UPDATE). Leases are timed by each process's clock.
"""

from __future__ import annotations

import importlib
import time
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from savegate.limits.ledger.base import Balance, Limits, Reservation, over
from savegate.limits.ledger.store import TOMBSTONE, Claim, Loaded, Reply
from savegate.store.engine import AsyncEngine
from savegate.store.serial import Serial
from savegate.store.tables import budget_holds, budget_months, budget_settled


def _month_of(period: datetime) -> str:
    return f"{period:%Y-%m}"


class DatabaseStore:
    errors: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError)
    kind = "database"

    def __init__(self, engine: AsyncEngine) -> None:
        self._serial = Serial(engine)
        # The engine's own dialect: a SQLite gateway never loads PostgreSQL's.
        dialect = "postgresql" if engine.url.get_backend_name() == "postgresql" else "sqlite"
        self._insert: Any = importlib.import_module(f"sqlalchemy.dialects.{dialect}").insert

    @staticmethod
    def _month(connection: Connection, key_id: str, period: str) -> Row[Any] | None:
        query = select(budget_months).where(
            budget_months.c.key_id == key_id, budget_months.c.period == period
        )
        return connection.execute(query.with_for_update()).first()

    @staticmethod
    def _state(row: Row[Any] | None, gen: str, *, settling: bool = False) -> Reply | None:
        """The reply when the month cannot be used as it is: absent, loading or stale.
        Settlements go on while it loads (as in lua.py)."""
        if row is None:
            return Reply("absent")
        if row.loading_until is not None and not settling:
            return Reply("absent" if row.loading_until < time.time() else "loading")
        if row.gen != gen:
            return Reply("stale", gen=row.gen)
        return None

    def _hold(self, connection: Connection, holds: list[Reservation], lease: float) -> None:
        if holds:
            rows = [
                {
                    "id": h.id,
                    "key_id": h.key_id,
                    "period": _month_of(h.period),
                    "tokens": h.tokens,
                    "cost": h.cost,
                    "expires_at": time.time() + lease,
                }
                for h in holds
            ]
            statement = self._insert(budget_holds).on_conflict_do_nothing()
            connection.execute(statement, rows)

    def _release(self, connection: Connection, hold: Reservation) -> None:
        """Keep a settled hold a while, at zero (see TOMBSTONE)."""
        zero = {"tokens": 0, "cost": 0.0, "expires_at": time.time() + TOMBSTONE}
        row = {"id": hold.id, "key_id": hold.key_id, "period": _month_of(hold.period), **zero}
        statement = self._insert(budget_holds).values(row)
        connection.execute(statement.on_conflict_do_update(index_elements=["id"], set_=zero))

    async def reserve(self, hold: Reservation, gen: str, limits: Limits, lease: float) -> Reply:
        return await self._serial.run(lambda c: self._reserve(c, hold, gen, limits, lease))

    def _reserve(
        self, connection: Connection, hold: Reservation, gen: str, limits: Limits, lease: float
    ) -> Reply:
        period = _month_of(hold.period)
        mine = (budget_holds.c.key_id == hold.key_id) & (budget_holds.c.period == period)
        row = self._month(connection, hold.key_id, period)
        state = self._state(row, gen)
        if state is not None or row is None:
            return state or Reply("absent")
        expired = delete(budget_holds).where(mine, budget_holds.c.expires_at < time.time())
        connection.execute(expired)
        totals = select(
            func.coalesce(func.sum(budget_holds.c.tokens), 0),
            func.coalesce(func.sum(budget_holds.c.cost), 0.0),
        ).where(mine)
        held_tokens, held_cost = connection.execute(totals).one()
        balance = Balance(row.tokens, row.spend, int(held_tokens), float(held_cost))
        which = over(limits, balance, hold.tokens, hold.cost)
        if which is None:
            self._hold(connection, [hold], lease)
        return Reply("over" if which else "ok", over=which, balance=balance)

    async def settle(
        self, hold: Reservation, gen: str, tokens: int, cost: float, request_id: str
    ) -> Reply:
        return await self._serial.run(
            lambda c: self._settle(c, hold, gen, tokens, cost, request_id)
        )

    def _settle(
        self,
        connection: Connection,
        hold: Reservation,
        gen: str,
        tokens: int,
        cost: float,
        request_id: str,
    ) -> Reply:
        period = _month_of(hold.period)
        row = self._month(connection, hold.key_id, period)
        state = self._state(row, gen, settling=True)
        if state is not None or row is None:
            return state or Reply("absent")
        loading = row.loading_until is not None
        self._release(connection, hold)
        connection.execute(
            update(budget_months)
            .where(budget_months.c.key_id == hold.key_id, budget_months.c.period == period)
            .values(tokens=row.tokens + tokens, spend=row.spend + cost)
        )
        if loading:
            settled = {"key_id": hold.key_id, "period": period, "request_id": request_id}
            connection.execute(self._insert(budget_settled).on_conflict_do_nothing(), settled)
        before = Balance(row.tokens, row.spend)
        after = Balance(row.tokens + tokens, row.spend + cost)
        return Reply("ok", balance=before, after=after, partial=loading)

    async def claim(
        self,
        key_id: str,
        period: datetime,
        gen: str,
        loader: str,
        holds: list[Reservation],
        lease: float,
        claim_for: float,
    ) -> Claim:
        month = _month_of(period)
        loading = {"loading_until": time.time() + claim_for, "loader": loader}

        def work(connection: Connection) -> Claim:
            created = connection.execute(
                self._insert(budget_months)
                .values(key_id=key_id, period=month, gen=gen, tokens=0, spend=0.0, **loading)
                .on_conflict_do_nothing()
            )
            claimed = created.rowcount == 1
            row = self._month(connection, key_id, month)
            assert row is not None
            if not claimed and row.loading_until is not None and row.loading_until < time.time():
                claimed = True  # its loader died; what was settled since is left out again
                connection.execute(
                    update(budget_months)
                    .where(budget_months.c.key_id == key_id, budget_months.c.period == month)
                    .values(**loading)
                )
            self._hold(connection, holds, lease)
            return Claim(claimed, row.gen)

        return await self._serial.run(work)

    async def settled_while_loading(self, key_id: str, period: datetime) -> frozenset[str]:
        query = select(budget_settled.c.request_id).where(
            budget_settled.c.key_id == key_id, budget_settled.c.period == _month_of(period)
        )
        return await self._serial.run(lambda c: frozenset(c.execute(query).scalars()))

    async def loaded(
        self, key_id: str, period: datetime, loader: str, seen: int, tokens: int, spend: float
    ) -> Loaded:
        month = _month_of(period)
        settled = (budget_settled.c.key_id == key_id) & (budget_settled.c.period == month)

        def work(connection: Connection) -> Loaded:
            row = self._month(connection, key_id, month)
            if row is None or row.loader != loader:
                return "lost"
            count = select(func.count()).select_from(budget_settled).where(settled)
            if connection.execute(count).scalar_one() != seen:
                return "again"
            connection.execute(
                update(budget_months)
                .where(budget_months.c.key_id == key_id, budget_months.c.period == month)
                .values(
                    tokens=row.tokens + tokens,
                    spend=row.spend + spend,
                    loading_until=None,
                    loader=None,
                )
            )
            connection.execute(delete(budget_settled).where(settled))
            return "done"

        return await self._serial.run(work)

    async def adopt(
        self, key_id: str, period: datetime, holds: list[Reservation], lease: float
    ) -> Reply:
        def work(connection: Connection) -> Reply:
            row = self._month(connection, key_id, _month_of(period))
            if row is None:
                return Reply("absent")
            self._hold(connection, holds, lease)
            return Reply("ok", gen=row.gen)

        return await self._serial.run(work)

    async def forget(self, key_id: str, period: datetime) -> None:
        month = _month_of(period)

        def work(connection: Connection) -> None:
            for table in (budget_months, budget_holds, budget_settled):
                connection.execute(
                    delete(table).where(table.c.key_id == key_id, table.c.period == month)
                )

        await self._serial.run(work)

    async def aclose(self) -> None:
        await self._serial.aclose()
