"""What is recorded for every request."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String

from savegate.core.usage import TokenCounts
from savegate.metering.savings import Savings
from savegate.store.tables import usage

# The `usage` table's text columns and their sizes. What a client asked for (the model
# name) and what an upstream reported (the model, an error code) may be any length, and
# PostgreSQL refuses a row with a value too long for its column: one such row would
# otherwise be a way for any client to stop metering.
# Names as plain, interned `str` (SQLAlchemy's are a subclass, which `getattr` looks up
# past the type's attribute cache: 1,300 instructions each instead of 400).
_SIZES = tuple(
    (sys.intern(str(column.name)), column.type.length)
    for column in usage.columns
    if isinstance(column.type, String) and column.type.length
)

# Both frozen, so every record may share them: made anew, each cost a microsecond.
NO_TOKENS = TokenCounts()
NO_SAVINGS = Savings()


@dataclass(slots=True)
class UsageRecord:
    request_id: str
    key_id: str
    endpoint: str
    requested_model: str
    stream: bool
    model: str | None = None
    provider: str | None = None
    tokens: TokenCounts = NO_TOKENS
    cost_usd: float = 0.0
    list_cost_usd: float = 0.0  # the baseline: cost_usd plus every saving
    savings: Savings = NO_SAVINGS
    latency_ms: float | None = None
    ttft_ms: float | None = None
    status: int = 200
    error_type: str | None = None
    cache_hit: bool = False
    client_disconnected: bool = False
    estimated: bool = False
    batch_id: str | None = None
    unit: str | None = None  # images, audio and speech: what `units` counts
    units: float | None = None
    semantic_cache_hit: bool = False  # a cache hit (cache_hit too) from the semantic cache
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def fit(self) -> None:
        """Cut text values to their column's size, without NUL characters (PostgreSQL
        refuses them); make text of any other value there."""
        for name, size in _SIZES:
            value = getattr(self, name)
            if value is not None and (
                type(value) is not str or len(value) > size or "\x00" in value
            ):
                setattr(self, name, str(value).replace("\x00", "")[:size])

    def values(self) -> tuple[Any, ...]:
        """The `usage` row, in `COLUMNS` order. Spelled out rather than
        dataclasses.astuple(), which deep-copies: this runs for every request."""
        tokens, savings = self.tokens, self.savings
        return (
            self.request_id,
            self.key_id,
            self.created_at,
            self.endpoint,
            self.requested_model,
            self.model,
            self.provider,
            tokens.prompt,
            tokens.cached,
            tokens.completion,
            tokens.reasoning,
            self.cost_usd,
            self.list_cost_usd,
            self.latency_ms,
            self.ttft_ms,
            self.stream,
            self.status,
            self.error_type,
            self.cache_hit,
            self.client_disconnected,
            self.estimated,
            tokens.cache_write,
            savings.discount,
            savings.response_cache,
            savings.semantic_cache,
            savings.prompt_cache,
            savings.route,
            self.batch_id,
            self.unit,
            self.units,
            self.semantic_cache_hit,
        )


COLUMNS = (
    "request_id",
    "key_id",
    "created_at",
    "endpoint",
    "requested_model",
    "model",
    "provider",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cost_usd",
    "list_cost_usd",
    "latency_ms",
    "ttft_ms",
    "stream",
    "status",
    "error_type",
    "cache_hit",
    "client_disconnected",
    "estimated",
    "cache_write_tokens",
    "saving_discount_usd",
    "saving_cache_usd",
    "saving_semantic_usd",
    "saving_prompt_cache_usd",
    "saving_route_usd",
    "batch_id",
    "unit",
    "units",
    "semantic_cache_hit",
)
