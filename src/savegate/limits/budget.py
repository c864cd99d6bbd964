"""Monthly token quotas and USD budgets per key, enforced before the call.

Each request reserves its worst case (an upper bound of its prompt tokens plus its
output limit, priced) and settles its real cost afterwards, so concurrent requests can
never spend past a hard limit together. State lives in memory per key and month, loaded
once from the usage table; a new month starts from zero.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from savegate.core.errors import GatewayError
from savegate.core.keys import ApiKey

Loader = Callable[[str, datetime], Awaitable[tuple[int, float]]]
Alert = Callable[[ApiKey, str, float, float, float], None]


class QuotaExceeded(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass(slots=True)
class KeyMonth:
    period: datetime
    tokens: int = 0
    spend: float = 0.0
    reserved_tokens: int = 0
    reserved_cost: float = 0.0
    alerted: set[tuple[str, float]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Reservation:
    key: ApiKey
    period: datetime
    tokens: int
    cost: float


def limited(key: ApiKey) -> bool:
    return key.monthly_token_quota is not None or key.monthly_budget_usd is not None


class BudgetBook:
    def __init__(self, load: Loader, alert: Alert) -> None:
        self._load = load
        self._alert = alert
        self._months: dict[str, KeyMonth] = {}
        self._loading: dict[str, asyncio.Lock] = {}

    async def _month(self, key: ApiKey, now: datetime) -> KeyMonth:
        period = month_start(now)
        state = self._months.get(key.id)
        if state is not None and state.period == period:
            return state
        lock = self._loading.setdefault(key.id, asyncio.Lock())
        async with lock:
            state = self._months.get(key.id)
            if state is None or state.period != period:
                tokens, spend = await self._load(key.id, period)
                state = KeyMonth(period, tokens, spend)
                self._months[key.id] = state
        return state

    async def reserve(self, key: ApiKey, tokens: int, cost: float) -> Reservation | None:
        """Hold `tokens` and `cost` for one request, or refuse it with 429."""
        if not limited(key):
            return None
        state = await self._month(key, datetime.now(UTC))
        quota = key.monthly_token_quota
        if quota is not None and state.tokens + state.reserved_tokens + tokens > quota:
            raise QuotaExceeded(
                f"This key's monthly token quota ({quota:,} tokens) is used up"
                + (" or too small for this request." if state.tokens < quota else ".")
                + f" Used this month: {state.tokens:,}. It resets on the 1st (UTC)."
            )
        budget = key.monthly_budget_usd
        if (
            budget is not None
            and key.budget_mode == "hard"
            and state.spend + state.reserved_cost + cost > budget
        ):
            raise QuotaExceeded(
                f"This key's monthly budget (${budget:,.2f}) is spent or too small for this "
                f"request. Spent this month: ${state.spend:,.4f}. It resets on the 1st (UTC)."
            )
        state.reserved_tokens += tokens
        state.reserved_cost += cost
        return Reservation(key, state.period, tokens, cost)

    def settle(
        self, reservation: Reservation | None, key: ApiKey, tokens: int, cost: float
    ) -> None:
        """Replace a reservation by what the request really used."""
        state = self._months.get(key.id)
        if state is None:
            return
        if reservation is not None and reservation.period == state.period:
            state.reserved_tokens -= reservation.tokens
            state.reserved_cost -= reservation.cost
        before_tokens, before_spend = state.tokens, state.spend
        state.tokens += tokens
        state.spend += cost
        self._check_alerts(key, state, before_tokens, before_spend)

    def _check_alerts(self, key: ApiKey, state: KeyMonth, tokens: int, spend: float) -> None:
        for threshold in key.alert_thresholds:
            if key.monthly_budget_usd:
                line = threshold * key.monthly_budget_usd
                if spend < line <= state.spend and ("usd", threshold) not in state.alerted:
                    state.alerted.add(("usd", threshold))
                    self._alert(key, "budget_usd", threshold, state.spend, key.monthly_budget_usd)
            if key.monthly_token_quota:
                line = threshold * key.monthly_token_quota
                if tokens < line <= state.tokens and ("tokens", threshold) not in state.alerted:
                    state.alerted.add(("tokens", threshold))
                    self._alert(
                        key, "token_quota", threshold, state.tokens, key.monthly_token_quota
                    )

    def forget(self, key_id: str) -> None:
        """Drop a key's state, for instance after its limits changed."""
        self._months.pop(key_id, None)
