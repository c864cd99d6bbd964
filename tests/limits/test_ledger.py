"""The shared budget ledger in process, on each store: two ledgers stand for two gateway
processes sharing it."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from savegate.core.keys import ApiKey
from savegate.limits.ledger import QuotaExceeded, SharedLedger
from savegate.limits.ledger.database import DatabaseStore
from savegate.limits.ledger.redis import RedisStore
from savegate.limits.ledger.store import LedgerStore
from savegate.store.db import create_engine, create_schema
from tests.limits.conftest import REDIS_URL
from tests.stores import database

Alerts = list[tuple[str, float]]
MakeLedger = Callable[..., SharedLedger]


def _key(**limits: object) -> ApiKey:
    return ApiKey("key_1", "test", "abcd", False, datetime.now(UTC), **limits)  # type: ignore[arg-type]


@pytest.fixture(params=["redis", "sqlite", "postgres"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], object]]:
    if request.param == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        yield lambda: RedisStore(REDIS_URL, prefix=prefix)
        return
    with database(request.param, tmp_path) as url:
        engine = create_engine(url)
        asyncio.run(create_schema(engine))
        asyncio.run(engine.dispose())
        yield lambda: DatabaseStore(create_engine(url))


def _ledgers(
    factory: Callable[[], object], alerts: Alerts, usage: list[float]
) -> list[SharedLedger]:
    async def load(key_id: str, since: datetime, excluding: frozenset[str]) -> tuple[int, float]:
        return 0, sum(usage)

    def alert(key: ApiKey, kind: str, threshold: float, used: float, limit: float) -> None:
        alerts.append((kind, threshold))

    return [
        SharedLedger(factory(), load, alert, lease=60, rebuild_wait=0.05)  # type: ignore[arg-type]
        for _ in range(2)
    ]


def test_two_ledgers_never_overspend_together(store_factory) -> None:
    alerts: Alerts = []
    key = _key(monthly_budget_usd=1.0, alert_thresholds=(0.25, 0.5))

    async def go() -> tuple[int, int]:
        ledgers = _ledgers(store_factory, alerts, [])
        admitted = refused = 0

        async def client(ledger: SharedLedger) -> None:
            nonlocal admitted, refused
            while True:  # until refused
                try:
                    held = await ledger.reserve(key, 10, 0.1)
                except QuotaExceeded:
                    refused += 1
                    return
                admitted += 1
                await asyncio.sleep(0.01)
                assert held is not None
                await ledger.settle(held, key, 5, 0.05, secrets.token_hex(4))

        await asyncio.gather(*(client(ledgers[i % 2]) for i in range(20)))
        for ledger in ledgers:
            await ledger.aclose()
        return admitted, refused

    admitted, refused = asyncio.run(go())
    assert refused == 20
    assert 10 <= admitted <= 19  # spent at most 0.95 with holds of 0.1: never past 1.0
    assert sorted(alerts) == [("budget_usd", 0.25), ("budget_usd", 0.5)]  # once each, over both


def test_a_lost_month_is_reloaded_with_the_holds_of_running_requests(store_factory) -> None:
    alerts: Alerts = []
    usage = [0.5]  # what the usage table holds for the key
    key = _key(monthly_budget_usd=1.0)

    async def go() -> None:
        first, second = _ledgers(store_factory, alerts, usage)
        running = await first.reserve(key, 10, 0.3)
        store: LedgerStore = first._store
        assert running is not None
        await store.forget(key.id, running.period)  # Redis flushed, say
        # The month comes back from the usage table, with the hold still counted.
        with pytest.raises(QuotaExceeded, match=r"Spent this month: \$0.5000"):
            await second.reserve(key, 10, 0.3)
        await first.settle(running, key, 5, 0.1, "req-1")
        usage.append(0.1)
        third = await second.reserve(key, 10, 0.3)
        assert third is not None
        with pytest.raises(QuotaExceeded, match=r"Spent this month: \$0.6000"):
            await first.reserve(key, 10, 0.3)
        for ledger in (first, second):
            await ledger.aclose()

    asyncio.run(go())


def test_a_hold_of_a_dead_process_ends_with_its_lease(store_factory) -> None:
    key = _key(monthly_token_quota=100)

    async def go() -> None:
        ledger = _ledgers(store_factory, [], [])[0]
        ledger._lease = 0.2
        assert await ledger.reserve(key, 100, 0.0) is not None  # never settled
        with pytest.raises(QuotaExceeded):
            await ledger.reserve(key, 1, 0.0)
        await asyncio.sleep(0.3)
        assert await ledger.reserve(key, 100, 0.0) is not None
        await ledger.aclose()

    asyncio.run(go())


def test_limits_come_with_each_call() -> None:
    """No store needed: a refusal's message names the limit of the key as passed."""
    from savegate.limits.ledger.base import Balance, Limits, over, refusal

    limits = Limits.of(_key(monthly_token_quota=100, monthly_budget_usd=2.0, budget_mode="soft"))
    assert limits.budget is None  # soft: alerts only
    assert over(limits, Balance(tokens=90, held_tokens=5), 6, 0.0) == "tokens"
    assert "100 tokens" in refusal("tokens", limits, Balance(tokens=90)).message
