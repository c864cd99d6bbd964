"""The ledger's store in Redis: one script call per step, atomic (see lua.py), so any
number of gateways share exact balances. Unlike the rate limits, this never fails open:
an unreachable Redis refuses limited keys (503) rather than let them overspend."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from savegate.limits.ledger.base import Balance, Limits, Over, Reservation, month_end
from savegate.limits.ledger.lua import ADOPT, CLAIM, LOADED, RESERVE, SETTLE
from savegate.limits.ledger.store import TOMBSTONE, Claim, Loaded, Reply

_KEEP = 40 * 86400  # a month's state outlives it by this long, then Redis drops it


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _arg(limit: float | None) -> float:
    return -1 if limit is None else limit


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _flat(holds: list[Reservation]) -> list[str | int | float]:
    return [field for h in holds for field in (h.id, h.tokens, repr(h.cost))]


def _balance(values: list[Any]) -> Balance:
    tokens, spend, held_tokens, held_cost = (float(_text(v)) for v in values)
    return Balance(int(tokens), spend, int(held_tokens), held_cost)


class RedisStore:
    errors: tuple[type[BaseException], ...] = (RedisError, OSError)
    kind = "redis"

    def __init__(self, url: str, *, prefix: str, timeout: float = 1.0) -> None:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=50, timeout=timeout, socket_timeout=timeout
        )
        self._redis = Redis.from_pool(pool)
        self._prefix = prefix
        self._reserve = self._redis.register_script(RESERVE)
        self._settle = self._redis.register_script(SETTLE)
        self._claim = self._redis.register_script(CLAIM)
        self._loaded = self._redis.register_script(LOADED)
        self._adopt = self._redis.register_script(ADOPT)

    def keys(self, key_id: str, period: datetime) -> list[str]:
        base = f"{self._prefix}{{{key_id}}}:{period:%Y-%m}"  # braces: one hash tag per key
        return [base, f"{base}:leases", f"{base}:holds", f"{base}:settled"]

    def _ttl(self, period: datetime) -> int:
        return int((month_end(period) - period).total_seconds()) + _KEEP

    async def reserve(self, hold: Reservation, gen: str, limits: Limits, lease: float) -> Reply:
        args: list[str | int | float] = [
            gen,
            hold.id,
            hold.tokens,
            repr(hold.cost),
            _arg(limits.quota),
            repr(_arg(limits.budget)),
            _ms(lease),
            self._ttl(hold.period),
        ]
        reply = await self._reserve(keys=self.keys(hold.key_id, hold.period), args=args)
        status = _text(reply[0])
        if status in ("absent", "loading"):
            return Reply(status)  # type: ignore[arg-type]
        if status == "stale":
            return Reply("stale", gen=_text(reply[1]))
        which: Over | None = _text(reply[1]) or None  # type: ignore[assignment]
        return Reply("over" if which else "ok", over=which, balance=_balance(reply[2:6]))

    async def settle(
        self, hold: Reservation, gen: str, tokens: int, cost: float, request_id: str
    ) -> Reply:
        args: list[str | int | float] = [
            gen,
            hold.id,
            tokens,
            repr(cost),
            request_id,
            _ms(TOMBSTONE),
            self._ttl(hold.period),
        ]
        reply = await self._settle(keys=self.keys(hold.key_id, hold.period), args=args)
        status = _text(reply[0])
        if status == "absent":
            return Reply("absent")
        if status == "stale":
            return Reply("stale", gen=_text(reply[1]))
        before = _balance([reply[1], reply[2], 0, 0])
        after = _balance([reply[3], reply[4], 0, 0])
        return Reply("ok", balance=before, after=after, partial=int(reply[5]) == 1)

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
        args = [gen, loader, _ms(claim_for), _ms(lease), self._ttl(period), *_flat(holds)]
        claimed, current = await self._claim(keys=self.keys(key_id, period), args=args)
        return Claim(int(claimed) == 1, _text(current))

    async def settled_while_loading(self, key_id: str, period: datetime) -> frozenset[str]:
        members = await self._redis.smembers(self.keys(key_id, period)[3])
        return frozenset(_text(m) for m in members)

    async def loaded(
        self, key_id: str, period: datetime, loader: str, seen: int, tokens: int, spend: float
    ) -> Loaded:
        args: list[str | int | float] = [loader, seen, tokens, repr(spend)]
        done = _text(await self._loaded(keys=self.keys(key_id, period), args=args))
        return done  # type: ignore[return-value]

    async def adopt(
        self, key_id: str, period: datetime, holds: list[Reservation], lease: float
    ) -> Reply:
        args = [_ms(lease), self._ttl(period), *_flat(holds)]
        reply = await self._adopt(keys=self.keys(key_id, period), args=args)
        if _text(reply[0]) == "absent":
            return Reply("absent")
        return Reply("ok", gen=_text(reply[1]))

    async def forget(self, key_id: str, period: datetime) -> None:
        await self._redis.delete(*self.keys(key_id, period))

    async def aclose(self) -> None:
        await self._redis.aclose()
