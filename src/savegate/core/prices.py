"""A model's price, USD per 1M tokens: the value the config, routing and metering share."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from savegate.core.usage import TokenCounts


class ModelPrice(BaseModel):
    """USD per 1M tokens. Cached input defaults to input; cache writes to input."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def cost(self, tokens: TokenCounts) -> float:
        fresh = max(0, tokens.prompt - tokens.cached - tokens.cache_write)
        cached = self.cached_input if self.cached_input is not None else self.input
        write = self.cache_write if self.cache_write is not None else self.input
        total = (
            fresh * self.input
            + tokens.cached * cached
            + tokens.cache_write * write
            + tokens.completion * self.output  # reasoning tokens are part of completion
        )
        return total / 1_000_000
