"""Model prices and the cost of a request.

List prices (USD per 1M tokens; images, audio and speech by their units, see
`core/prices.py`) ship for common models; the config can override them
and say what each deployment really costs (a discount off list, or explicit prices), so
that every request is priced twice: at the price paid and at list price.
"""

from __future__ import annotations

from dataclasses import dataclass

from savegate.core.media import MediaUse
from savegate.core.prices import ModelPrice
from savegate.core.usage import TokenCounts


def _p(input: float, cached: float | None, output: float, write: float | None = None) -> ModelPrice:
    return ModelPrice(input=input, cached_input=cached, output=output, cache_write_5m=write)


# Public list prices, USD per 1M tokens (standard tier, prompts up to 200K tokens).
LIST_PRICES: dict[str, ModelPrice] = {
    "gpt-5": _p(1.25, 0.125, 10.00),
    "gpt-5-mini": _p(0.25, 0.025, 2.00),
    "gpt-5-nano": _p(0.05, 0.005, 0.40),
    "gpt-4.1": _p(2.00, 0.50, 8.00),
    "gpt-4.1-mini": _p(0.40, 0.10, 1.60),
    "gpt-4.1-nano": _p(0.10, 0.025, 0.40),
    "gpt-4o": _p(2.50, 1.25, 10.00),
    "gpt-4o-mini": _p(0.15, 0.075, 0.60),
    "gpt-4-turbo": _p(10.00, None, 30.00),
    "gpt-4": _p(30.00, None, 60.00),
    "gpt-3.5-turbo": _p(0.50, None, 1.50),
    "o3": _p(2.00, 0.50, 8.00),
    "o4-mini": _p(1.10, 0.275, 4.40),
    "o1": _p(15.00, 7.50, 60.00),
    "text-embedding-3-small": _p(0.02, None, 0.0),
    "text-embedding-3-large": _p(0.13, None, 0.0),
    "text-embedding-ada-002": _p(0.10, None, 0.0),
    "claude-opus-4-5": _p(5.00, 0.50, 25.00, 6.25),
    "claude-opus-4-1": _p(15.00, 1.50, 75.00, 18.75),
    "claude-opus-4": _p(15.00, 1.50, 75.00, 18.75),
    "claude-sonnet-4-5": _p(3.00, 0.30, 15.00, 3.75),
    "claude-sonnet-4": _p(3.00, 0.30, 15.00, 3.75),
    "claude-3-7-sonnet": _p(3.00, 0.30, 15.00, 3.75),
    "claude-haiku-4-5": _p(1.00, 0.10, 5.00, 1.25),
    "claude-3-5-haiku": _p(0.80, 0.08, 4.00, 1.00),
    "claude-3-opus": _p(15.00, 1.50, 75.00, 18.75),
    "gemini-2.5-pro": _p(1.25, 0.31, 10.00),
    "gemini-2.5-flash": _p(0.30, 0.075, 2.50),
    "gemini-2.5-flash-lite": _p(0.10, 0.025, 0.40),
    "gemini-2.0-flash": _p(0.10, 0.025, 0.40),
    "deepseek-chat": _p(0.28, 0.028, 0.42),
    "deepseek-reasoner": _p(0.28, 0.028, 0.42),
    **{
        # Images: USD per image by quality and size; audio per minute heard; speech per
        # 1M characters. Moderations are free.
        "dall-e-2": ModelPrice(image={"256x256": 0.016, "512x512": 0.018, "1024x1024": 0.02}),
        "dall-e-3": ModelPrice(
            image={
                "standard/1024x1024": 0.04,
                "standard/1792x1024": 0.08,
                "standard/1024x1792": 0.08,
                "hd/1024x1024": 0.08,
                "hd/1792x1024": 0.12,
                "hd/1024x1792": 0.12,
            }
        ),
        "gpt-image-1": ModelPrice(
            image={
                "low/1024x1024": 0.011,
                "low/1024x1536": 0.016,
                "low/1536x1024": 0.016,
                "medium/1024x1024": 0.042,
                "medium/1024x1536": 0.063,
                "medium/1536x1024": 0.063,
                "high/1024x1024": 0.167,
                "high/1024x1536": 0.25,
                "high/1536x1024": 0.25,
            }
        ),
        "gemini-2.5-flash-image": ModelPrice(image={"*": 0.039}),
        "whisper-1": ModelPrice(audio_minute=0.006),
        "gpt-4o-transcribe": ModelPrice(audio_minute=0.006),
        "gpt-4o-mini-transcribe": ModelPrice(audio_minute=0.003),
        "tts-1": ModelPrice(characters=15.0),
        "tts-1-hd": ModelPrice(characters=30.0),
        # Billed by tokens upstream; OpenAI's own estimate ($0.015 a minute) as characters.
        "gpt-4o-mini-tts": ModelPrice(characters=15.0),
        "omni-moderation": ModelPrice(),  # -latest and dated ids too
        "text-moderation": ModelPrice(),
    },
}
FREE = ModelPrice(input=0.0, output=0.0)


def find_price(table: dict[str, ModelPrice], model: str) -> ModelPrice | None:
    """Exact name first, then the longest known prefix (dated ids: `gpt-4o-2024-08-06`)."""
    price = table.get(model)
    if price is not None:
        return price
    base = model.rsplit("/", 1)[-1]
    matches = [name for name in table if base == name or base.startswith(name + "-")]
    return table[max(matches, key=len)] if matches else None


@dataclass(frozen=True, slots=True)
class Pricing:
    """How one deployment is priced: at list, and at what the operator really pays. With
    only one of them known, it stands for both."""

    list_price: ModelPrice | None
    paid_price: ModelPrice | None

    @property
    def known(self) -> bool:
        return self.list_price is not None or self.paid_price is not None

    @property
    def listed(self) -> ModelPrice | None:
        return self.list_price or self.paid_price

    @property
    def paid(self) -> ModelPrice | None:
        return self.paid_price or self.list_price

    def paid_cost(self, tokens: TokenCounts) -> float:
        price = self.paid
        return price.cost(tokens) if price is not None else 0.0

    def list_cost(self, tokens: TokenCounts) -> float:
        price = self.listed
        return price.cost(tokens) if price is not None else 0.0

    def media_costs(self, use: MediaUse) -> tuple[float, float]:
        """(cost paid, cost at list price) of an image, audio or moderation call."""
        paid, listed = self.paid, self.listed
        return (
            paid.media_cost(use) if paid is not None else 0.0,
            listed.media_cost(use) if listed is not None else 0.0,
        )

    def media_worst_case(self, use: MediaUse) -> float:
        """What a call for at most `use` may cost (unknown quality or size: the dearest)."""
        price = self.paid
        return price.media_cost(use) if price is not None else 0.0

    def worst_case(self, prompt_tokens: int, max_output: int) -> float:
        price = self.paid
        if price is None:
            return 0.0
        return (prompt_tokens * price.dearest_input + max_output * price.output) / 1_000_000


class PriceBook:
    def __init__(self, overrides: dict[str, ModelPrice]) -> None:
        self._list = {**LIST_PRICES, **overrides}

    def pricing(
        self,
        model: str,
        *,
        discount: float = 0.0,
        paid: dict[str, ModelPrice] | None = None,
        free: bool = False,
    ) -> Pricing:
        if free:
            return Pricing(FREE, FREE)
        listed = find_price(self._list, model)
        explicit = find_price(paid or {}, model)
        if explicit is None and listed is not None and discount:
            explicit = listed.scaled(1 - discount)
        return Pricing(listed, explicit)
