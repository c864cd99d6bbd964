"""A model's price: the value the config, routing and metering share.

Tokens are priced in USD per 1M; images per image, by quality and size; audio input per
minute; speech per 1M characters of input.
"""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from savegate.core.media import MediaUse
from savegate.core.usage import TokenCounts

# Prompt caching's prices relative to input when none is given: Anthropic's (the only
# provider that reports cache writes; OpenAI's and Gemini's reads are in the price table).
CACHED_INPUT_SHARE = 0.1
CACHE_WRITE_5M_SHARE = 1.25
CACHE_WRITE_1H_SHARE = 2.0


class ModelPrice(BaseModel):
    """USD per 1M tokens. Cache reads default to 0.1 x input, 5-minute cache writes to
    1.25 x and 1-hour writes to 2 x (`cache_write` is the 5-minute price's older name).

    `image` maps `quality/size` (or `size`, or `*`) to USD per image; `audio_minute` is
    USD per minute of audio in; `characters` USD per 1M characters of input."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    input: float = 0.0
    output: float = 0.0
    cached_input: float | None = None
    cache_write_5m: float | None = Field(
        default=None, validation_alias=AliasChoices("cache_write_5m", "cache_write")
    )
    cache_write_1h: float | None = None
    image: dict[str, float] | None = None
    audio_minute: float | None = None
    characters: float | None = None

    def scaled(self, factor: float) -> ModelPrice:
        """Every price times `factor` (a discount off list), unset ones left to default."""

        def times(value: float | None) -> float | None:
            return None if value is None else value * factor

        return ModelPrice(
            input=self.input * factor,
            output=self.output * factor,
            cached_input=times(self.cached_input),
            cache_write_5m=times(self.cache_write_5m),
            cache_write_1h=times(self.cache_write_1h),
            image=None if self.image is None else {k: v * factor for k, v in self.image.items()},
            audio_minute=times(self.audio_minute),
            characters=times(self.characters),
        )

    def cost(self, tokens: TokenCounts) -> float:
        fresh = max(0, tokens.prompt - tokens.cached - tokens.cache_write)
        write_1h = min(tokens.cache_write_1h, tokens.cache_write)
        cached = _or(self.cached_input, self.input * CACHED_INPUT_SHARE)
        write_5m = _or(self.cache_write_5m, self.input * CACHE_WRITE_5M_SHARE)
        write_1h_price = _or(self.cache_write_1h, self.input * CACHE_WRITE_1H_SHARE)
        total = (
            fresh * self.input
            + tokens.cached * cached
            + (tokens.cache_write - write_1h) * write_5m
            + write_1h * write_1h_price
            + tokens.completion * self.output  # reasoning tokens are part of completion
        )
        return total / 1_000_000

    @property
    def dearest_input(self) -> float:
        """The most one prompt token is priced at, by the prices given: a budget's bound
        (whose token count has room to spare for the default write premiums)."""
        return max(self.input, self.cache_write_5m or 0.0, self.cache_write_1h or 0.0)

    def media_cost(self, use: MediaUse) -> float:
        """Tokens, if any were reported, plus the units."""
        cost = self.cost(use.tokens)
        if use.images:
            cost += use.images * self.image_price(use.quality, use.size)
        if use.seconds and self.audio_minute:
            cost += use.seconds / 60 * self.audio_minute
        if use.characters and self.characters:
            cost += use.characters * self.characters / 1_000_000
        return cost

    def image_price(self, quality: str | None, size: str | None) -> float:
        """The price of one image: the most specific entry for a known quality and size,
        else the dearest entry an unknown (`auto`, or unlisted) one might be."""
        table = self.image or {}
        if quality not in (None, "auto") and size not in (None, "auto"):
            for key in (f"{quality}/{size}", f"{size}", "*"):
                if key in table:
                    return table[key]
        for wanted in ((quality, size), (quality, None), (None, size), (None, None)):
            fits = [price for key, price in table.items() if _fits(key, *wanted)]
            if fits:
                return max(fits)
        return 0.0


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _fits(key: str, quality: str | None, size: str | None) -> bool:
    if key == "*":
        return True
    wanted_quality, _, wanted_size = key.rpartition("/")
    return (not wanted_quality or quality in (None, "auto", wanted_quality)) and (
        size in (None, "auto", wanted_size)
    )
