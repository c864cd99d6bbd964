"""A key's usage totals read back from the usage table."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import func, select

from savegate.store.engine import AsyncEngine
from savegate.store.tables import usage


async def month_totals(
    engine: AsyncEngine, key_id: str, since: datetime, excluding: Collection[str] = ()
) -> tuple[int, float]:
    """Tokens and spend of a key's rows since `since`, less those of `excluding` requests.
    Cache hits cost nothing and count against no quota."""
    query = select(
        func.coalesce(func.sum(usage.c.prompt_tokens + usage.c.completion_tokens), 0),
        func.coalesce(func.sum(usage.c.cost_usd), 0.0),
    ).where(usage.c.key_id == key_id, usage.c.created_at >= since, usage.c.cache_hit.is_(False))
    if excluding:
        query = query.where(usage.c.request_id.not_in(list(excluding)))
    async with engine.connect() as connection:
        tokens, spend = (await connection.execute(query)).one()
    return int(tokens), float(spend)
