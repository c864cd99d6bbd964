"""`savegate usage [report|requests|spend|savings]`: usage, spend and savings by source as
tables in the terminal."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from savegate.config import Config
from savegate.metering.queries import GROUPS, UsageFilters, UsageQueries
from savegate.store.db import create_engine, create_schema

T = TypeVar("T")
# The sources of savings, as columns.
SOURCE_TITLES = {
    "discount": "DISCOUNT",
    "response_cache": "RESPONSE CACHE",
    "semantic_cache": "SEMANTIC CACHE",
    "prompt_cache": "PROMPT CACHE",
    "route": "CHEAPER ROUTE",
}


def _since(value: str) -> datetime:
    """An ISO date, or a span back from now: `7d`, `24h`."""
    if value[-1:] in ("d", "h") and value[:-1].isdigit():
        unit = "days" if value[-1] == "d" else "hours"
        return datetime.now(UTC) - timedelta(**{unit: int(value[:-1])})
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def register(commands: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    parser = commands.add_parser("usage", help="usage and spend reports")
    common(parser)
    parser.add_argument(
        "view", nargs="?", choices=["report", "requests", "spend", "savings"], default="report"
    )
    parser.add_argument("--group-by", choices=GROUPS, default="model")
    parser.add_argument("--since", type=_since, help="ISO date or a span: 7d, 24h")
    parser.add_argument("--until", type=_since)
    parser.add_argument("--key", dest="key_id")
    parser.add_argument("--model")
    parser.add_argument("--provider")
    parser.add_argument("--limit", type=int, default=50)
    parser.set_defaults(run=run)


def _with_queries(config: Config, action: Callable[[UsageQueries], Awaitable[T]]) -> T:
    async def go() -> T:
        engine = create_engine(config.resolved_database_url())
        try:
            await create_schema(engine)
            return await action(UsageQueries(engine))
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _money(value: float) -> str:
    return f"${value:,.4f}"


def _sources(row: dict[str, Any]) -> list[str]:
    return [_money(row["savings_by_source"][source]) for source in SOURCE_TITLES]


def run(args: argparse.Namespace, config: Config) -> int:
    filters = UsageFilters(
        start=args.since,
        end=args.until,
        key_id=args.key_id,
        model=args.model,
        provider=args.provider,
    )
    console = Console(width=200)
    if args.view == "spend":
        summary = _with_queries(config, lambda q: q.summary(filters))
        table = Table(
            "REQUESTS",
            "TOKENS",
            "COST (PAID)",
            "AT LIST PRICE",
            "SAVINGS",
            *SOURCE_TITLES.values(),
            "ERRORS",
        )
        table.add_row(
            f"{summary['requests']:,}",
            f"{summary['total_tokens']:,}",
            _money(summary["cost_usd"]),
            _money(summary["list_cost_usd"]),
            _money(summary["savings_usd"]),
            *_sources(summary),
            f"{summary['errors']:,}",
        )
    elif args.view == "savings":
        rows = _with_queries(config, lambda q: q.grouped(args.group_by, filters, args.limit, 0))
        table = Table(args.group_by.upper(), "SAVINGS", *SOURCE_TITLES.values(), "CACHE HITS")
        for row in rows:
            table.add_row(
                str(row[args.group_by]),
                _money(row["savings_usd"]),
                *_sources(row),
                f"{row['cache_hits']:,}",
            )
    elif args.view == "requests":
        rows = _with_queries(config, lambda q: q.requests(filters, args.limit, 0))
        table = Table(
            "TIME", "KEY", "MODEL", "PROVIDER", "IN", "OUT", "COST", "MS", "TTFT", "STATUS"
        )
        for row in rows:
            table.add_row(
                row["created_at"][:19],
                row["key_id"],
                row["requested_model"],
                row["provider"] or "",
                str(row["prompt_tokens"]),
                str(row["completion_tokens"]),
                _money(row["cost_usd"]),
                f"{row['latency_ms'] or 0:.0f}",
                f"{row['ttft_ms']:.0f}" if row["ttft_ms"] else "",
                str(row["status"]) + (" ~" if row["estimated"] else ""),
            )
    else:
        rows = _with_queries(config, lambda q: q.grouped(args.group_by, filters, args.limit, 0))
        table = Table(
            args.group_by.upper(),
            "REQUESTS",
            "PROMPT",
            "CACHED",
            "COMPLETION",
            "COST (PAID)",
            "AT LIST PRICE",
            "SAVINGS",
            "ERRORS",
        )
        for row in rows:
            table.add_row(
                str(row[args.group_by]),
                f"{row['requests']:,}",
                f"{row['prompt_tokens']:,}",
                f"{row['cached_tokens']:,}",
                f"{row['completion_tokens']:,}",
                _money(row["cost_usd"]),
                _money(row["list_cost_usd"]),
                _money(row["savings_usd"]),
                f"{row['errors']:,}",
            )
    console.print(table)
    return 0
