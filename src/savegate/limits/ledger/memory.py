"""Balances in this process's memory: exact for one process, loaded once per key and month
from the usage table (written or still buffered here); a new month starts from zero."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from savegate.core.keys import ApiKey
from savegate.limits.ledger.base import (
    Alert,
    Balance,
    Limits,
    Reservation,
    limited,
    month_start,
    over,
    raise_alerts,
    refusal,
)

Loader = Callable[[str, datetime], Awaitable[tuple[int, float]]]


@dataclass(slots=True)
class _Month:
    period: datetime
    balance: Balance


class MemoryLedger:
    def __init__(self, load: Loader, alert: Alert) -> None:
        self._load = load
        self._alert = alert
        self._months: dict[str, _Month] = {}
        self._loading: dict[str, asyncio.Lock] = {}

    async def _month(self, key_id: str, period: datetime) -> _Month:
        state = self._months.get(key_id)
        if state is not None and state.period == period:
            return state
        async with self._loading.setdefault(key_id, asyncio.Lock()):
            state = self._months.get(key_id)
            if state is None or state.period != period:
                tokens, spend = await self._load(key_id, period)
                state = _Month(period, Balance(tokens, spend))
                self._months[key_id] = state
        return state

    async def reserve(self, key: ApiKey, tokens: int, cost: float) -> Reservation | None:
        if not limited(key):
            return None
        state = await self._month(key.id, month_start(datetime.now(UTC)))
        limits, balance = Limits.of(key), state.balance
        which = over(limits, balance, tokens, cost)
        if which is not None:
            raise refusal(which, limits, balance)
        state.balance = replace(
            balance,
            held_tokens=balance.held_tokens + tokens,
            held_cost=balance.held_cost + cost,
        )
        return Reservation(secrets.token_hex(8), key.id, state.period, tokens, cost)

    async def settle(
        self, reservation: Reservation, key: ApiKey, tokens: int, cost: float, request_id: str
    ) -> None:
        state = self._months.get(key.id)
        if state is None or state.period != reservation.period:
            return  # forgotten, or a new month: reloaded from the usage table
        before = state.balance
        state.balance = Balance(
            before.tokens + tokens,
            before.spend + cost,
            before.held_tokens - reservation.tokens,
            before.held_cost - reservation.cost,
        )
        raise_alerts(key, before, state.balance, self._alert)

    async def forget(self, key_id: str) -> None:
        self._months.pop(key_id, None)

    async def aclose(self) -> None:
        pass
