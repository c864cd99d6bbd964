"""Reading usage back: monthly totals for budgets, aggregates for the admin API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, func, select

from savegate.metering.sink import UsageSink
from savegate.store.engine import AsyncEngine
from savegate.store.tables import usage
from savegate.store.usage import month_totals


class UsageTotals:
    def __init__(self, engine: AsyncEngine, sink: UsageSink) -> None:
        self._engine = engine
        self._sink = sink

    async def month(self, key_id: str, since: datetime) -> tuple[int, float]:
        """Tokens and spend of a key since `since`, written or still buffered."""
        tokens, spend = await month_totals(self._engine, key_id, since)
        pending_tokens, pending_spend = self._sink.pending_totals(key_id, since)
        return tokens + pending_tokens, spend + pending_spend


GROUPS = ("key", "model", "provider", "day", "endpoint")
# Savings by source, as the admin API names them, and their columns.
SAVING_COLUMNS = {
    "discount": usage.c.saving_discount_usd,
    "response_cache": usage.c.saving_cache_usd,
    "semantic_cache": usage.c.saving_semantic_usd,
    "prompt_cache": usage.c.saving_prompt_cache_usd,
    "route": usage.c.saving_route_usd,
}


def _filters(query: Select[Any], filters: UsageFilters) -> Select[Any]:
    if filters.start is not None:
        query = query.where(usage.c.created_at >= filters.start)
    if filters.end is not None:
        query = query.where(usage.c.created_at < filters.end)
    if filters.key_id:
        query = query.where(usage.c.key_id == filters.key_id)
    if filters.model:
        query = query.where(usage.c.requested_model == filters.model)
    if filters.provider:
        query = query.where(usage.c.provider == filters.provider)
    return query


@dataclass(frozen=True, slots=True)
class UsageFilters:
    start: datetime | None = None
    end: datetime | None = None
    key_id: str | None = None
    model: str | None = None
    provider: str | None = None


def _group_column(group_by: str) -> Any:
    return {
        "key": usage.c.key_id,
        "model": usage.c.requested_model,
        "provider": usage.c.provider,
        "endpoint": usage.c.endpoint,
        "day": func.date(usage.c.created_at),
    }[group_by]


def _totals() -> list[Any]:
    return [
        func.count().label("requests"),
        func.coalesce(func.sum(usage.c.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(usage.c.cached_tokens), 0).label("cached_tokens"),
        func.coalesce(func.sum(usage.c.cache_write_tokens), 0).label("cache_write_tokens"),
        func.coalesce(func.sum(usage.c.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(usage.c.reasoning_tokens), 0).label("reasoning_tokens"),
        func.coalesce(func.sum(usage.c.cost_usd), 0.0).label("cost_usd"),
        func.coalesce(func.sum(usage.c.list_cost_usd), 0.0).label("list_cost_usd"),
        func.sum(case((usage.c.status >= 400, 1), else_=0)).label("errors"),
        func.avg(usage.c.latency_ms).label("avg_latency_ms"),
        func.avg(usage.c.ttft_ms).label("avg_ttft_ms"),
        func.sum(case((usage.c.cache_hit, 1), else_=0)).label("cache_hits"),
        *(
            func.coalesce(func.sum(column), 0.0).label(f"saving_{source}")
            for source, column in SAVING_COLUMNS.items()
        ),
    ]


def _totals_row(row: Any) -> dict[str, Any]:
    cost, listed = float(row.cost_usd or 0), float(row.list_cost_usd or 0)
    return {
        "requests": int(row.requests or 0),
        "prompt_tokens": int(row.prompt_tokens or 0),
        "cached_tokens": int(row.cached_tokens or 0),
        "cache_write_tokens": int(row.cache_write_tokens or 0),
        "completion_tokens": int(row.completion_tokens or 0),
        "reasoning_tokens": int(row.reasoning_tokens or 0),
        "total_tokens": int(row.prompt_tokens or 0) + int(row.completion_tokens or 0),
        "cost_usd": round(cost, 8),
        "list_cost_usd": round(listed, 8),
        "savings_usd": round(listed - cost, 8),
        "savings_by_source": {
            source: round(float(getattr(row, f"saving_{source}") or 0), 8)
            for source in SAVING_COLUMNS
        },
        "cache_hits": int(row.cache_hits or 0),
        "errors": int(row.errors or 0),
        "avg_latency_ms": round(float(row.avg_latency_ms), 3) if row.avg_latency_ms else None,
        "avg_ttft_ms": round(float(row.avg_ttft_ms), 3) if row.avg_ttft_ms else None,
    }


class UsageQueries:
    """Aggregates for the admin API and CLI. Flushes buffered rows first, so an operator
    always sees every finished request."""

    def __init__(self, engine: AsyncEngine, sink: UsageSink | None = None) -> None:
        self._engine = engine
        self._sink = sink

    async def _flush(self) -> None:
        if self._sink is not None:
            await self._sink.flush()

    async def grouped(
        self, group_by: str, filters: UsageFilters, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        await self._flush()
        column = _group_column(group_by)
        query = _filters(select(column.label("group"), *_totals()), filters).group_by(column)
        order = column if group_by == "day" else func.sum(usage.c.cost_usd).desc()
        query = query.order_by(order, column).limit(limit).offset(offset)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [
            {group_by: str(row.group) if row.group is not None else None, **_totals_row(row)}
            for row in rows
        ]

    async def summary(self, filters: UsageFilters) -> dict[str, Any]:
        await self._flush()
        async with self._engine.connect() as connection:
            row = (await connection.execute(_filters(select(*_totals()), filters))).one()
        return _totals_row(row)

    async def requests(
        self, filters: UsageFilters, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        await self._flush()
        query = _filters(select(usage), filters).order_by(usage.c.id.desc())
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query.limit(limit).offset(offset))).all()
        result = []
        for row in rows:
            item = {str(name): value for name, value in zip(row._fields, row, strict=True)}
            item["created_at"] = item["created_at"].isoformat()
            result.append(item)
        return result
