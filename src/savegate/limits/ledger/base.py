"""What every ledger shares: the limits a key carries, the check made before each call,
the refusals and the alerts. The ledgers differ only in where the balances live.

A balance is a key's month: tokens and spend settled, and the holds of requests still
running (their worst case, reserved before the call). A request is admitted when its
worst case fits beside the settled total and every hold.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from savegate.core.errors import GatewayError
from savegate.core.keys import ApiKey

Alert = Callable[[ApiKey, str, float, float, float], None]
Over = Literal["tokens", "usd"]


class QuotaExceeded(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"
    limit = "budget"  # or "quota": which one refused, for the metrics


class LedgerUnavailable(GatewayError):
    """Budgets cannot be checked: refusing is safer than spending past a hard limit."""

    status = 503
    type = "server_error"
    code = "budget_unavailable"


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_end(period: datetime) -> datetime:
    return (
        period.replace(year=period.year + 1, month=1)
        if period.month == 12
        else (period.replace(month=period.month + 1))
    )


def limited(key: ApiKey) -> bool:
    """Only such keys touch a ledger: the others cost nothing."""
    return key.monthly_token_quota is not None or key.monthly_budget_usd is not None


@dataclass(frozen=True, slots=True)
class Limits:
    """What refuses a request: the token quota, and the budget when it is hard (-1 in Lua
    and SQL arguments means none)."""

    quota: int | None
    budget: float | None

    @classmethod
    def of(cls, key: ApiKey) -> Limits:
        hard = key.monthly_budget_usd if key.budget_mode == "hard" else None
        return cls(key.monthly_token_quota, hard)


@dataclass(frozen=True, slots=True)
class Reservation:
    """One request's hold on its key's month."""

    id: str
    key_id: str
    period: datetime
    tokens: int
    cost: float


@dataclass(frozen=True, slots=True)
class Balance:
    tokens: int = 0
    spend: float = 0.0
    held_tokens: int = 0
    held_cost: float = 0.0


def over(limits: Limits, balance: Balance, tokens: int, cost: float) -> Over | None:
    """The limit this request would break, if any. The Lua script makes the same test."""
    quota, budget = limits.quota, limits.budget
    if quota is not None and balance.tokens + balance.held_tokens + tokens > quota:
        return "tokens"
    if budget is not None and balance.spend + balance.held_cost + cost > budget:
        return "usd"
    return None


def refusal(which: Over, limits: Limits, balance: Balance) -> QuotaExceeded:
    if which == "tokens":
        quota = limits.quota or 0
        error = QuotaExceeded(
            f"This key's monthly token quota ({quota:,} tokens) is used up"
            + (" or too small for this request." if balance.tokens < quota else ".")
            + f" Used this month: {balance.tokens:,}. It resets on the 1st (UTC)."
        )
        error.limit = "quota"
        return error
    return QuotaExceeded(
        f"This key's monthly budget (${limits.budget or 0:,.2f}) is spent or too small for "
        f"this request. Spent this month: ${balance.spend:,.4f}. It resets on the 1st (UTC)."
    )


def raise_alerts(key: ApiKey, before: Balance, after: Balance, alert: Alert) -> None:
    """Alerts for the thresholds one settlement crossed. Settlements of a month are
    serialised by the ledger, so each line is crossed by exactly one of them, in one
    process: once per threshold, key and month, without remembering what was sent."""
    budget, quota = key.monthly_budget_usd, key.monthly_token_quota
    for threshold in key.alert_thresholds:
        if budget and before.spend < threshold * budget <= after.spend:
            alert(key, "budget_usd", threshold, after.spend, budget)
        if quota and before.tokens < threshold * quota <= after.tokens:
            alert(key, "token_quota", threshold, after.tokens, quota)


class Ledger(Protocol):
    async def reserve(self, key: ApiKey, tokens: int, cost: float) -> Reservation | None:
        """Hold `tokens` and `cost` for one request, or refuse it with 429. None for a key
        without limits."""
        ...

    async def settle(
        self, reservation: Reservation, key: ApiKey, tokens: int, cost: float, request_id: str
    ) -> None:
        """Replace a hold by what the request really used. Never raises."""
        ...

    async def forget(self, key_id: str) -> None:
        """The key has just gained limits: what it spent meanwhile is only in the usage
        table, so its month is reloaded from there."""
        ...

    async def aclose(self) -> None: ...


# Tokens and spend of a key's month in the usage table, leaving out some requests.
UsageLoader = Callable[[str, datetime, frozenset[str]], Awaitable[tuple[int, float]]]
