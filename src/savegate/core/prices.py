"""A model's price: the value the config, routing and metering share.

Tokens are priced in USD per 1M; images per image, by quality and size; audio input per
minute; speech per 1M characters of input.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from savegate.core.media import MediaUse
from savegate.core.usage import TokenCounts


class ModelPrice(BaseModel):
    """USD per 1M tokens. Cached input defaults to input; cache writes to input.

    `image` maps `quality/size` (or `size`, or `*`) to USD per image; `audio_minute` is
    USD per minute of audio in; `characters` USD per 1M characters of input."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = 0.0
    output: float = 0.0
    cached_input: float | None = None
    cache_write: float | None = None
    image: dict[str, float] | None = None
    audio_minute: float | None = None
    characters: float | None = None

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

    def scaled(self, factor: float) -> ModelPrice:
        """Every price times `factor` (a discount off list)."""

        def times(value: float | None) -> float | None:
            return None if value is None else value * factor

        return ModelPrice(
            input=self.input * factor,
            output=self.output * factor,
            cached_input=times(self.cached_input),
            cache_write=times(self.cache_write),
            image=None if self.image is None else {k: v * factor for k, v in self.image.items()},
            audio_minute=times(self.audio_minute),
            characters=times(self.characters),
        )


def _fits(key: str, quality: str | None, size: str | None) -> bool:
    if key == "*":
        return True
    wanted_quality, _, wanted_size = key.rpartition("/")
    return (not wanted_quality or quality in (None, "auto", wanted_quality)) and (
        size in (None, "auto", wanted_size)
    )
