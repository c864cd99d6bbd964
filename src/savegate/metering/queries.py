"""Reading usage back: monthly totals for budgets, aggregates for the admin API."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from savegate.metering.sink import UsageSink
from savegate.store.tables import usage


class UsageTotals:
    def __init__(self, engine: AsyncEngine, sink: UsageSink) -> None:
        self._engine = engine
        self._sink = sink

    async def month(self, key_id: str, since: datetime) -> tuple[int, float]:
        """Tokens and spend of a key since `since`, written or still buffered."""
        query = select(
            func.coalesce(func.sum(usage.c.prompt_tokens + usage.c.completion_tokens), 0),
            func.coalesce(func.sum(usage.c.cost_usd), 0.0),
        ).where(usage.c.key_id == key_id, usage.c.created_at >= since)
        async with self._engine.connect() as connection:
            tokens, spend = (await connection.execute(query)).one()
        pending_tokens, pending_spend = self._sink.pending_totals(key_id, since)
        return int(tokens) + pending_tokens, float(spend) + pending_spend
