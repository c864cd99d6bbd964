"""Token counts of one upstream call, as every layer sees them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class TokenCounts:
    prompt: int = 0
    completion: int = 0
    cached: int = 0  # cache reads, part of prompt
    cache_write: int = 0  # cache writes, part of prompt
    cache_write_1h: int = 0  # of which for an hour (the rest for five minutes)
    reasoning: int = 0  # part of completion

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    def uncached(self) -> TokenCounts:
        """The same call with its cache reads as plain input: what it would have cost
        without prompt caching."""
        return replace(self, cached=0) if self.cached else self

    def __add__(self, other: TokenCounts) -> TokenCounts:
        return TokenCounts(
            self.prompt + other.prompt,
            self.completion + other.completion,
            self.cached + other.cached,
            self.cache_write + other.cache_write,
            self.reasoning + other.reasoning,
        )

    @classmethod
    def from_openai(cls, usage: dict[str, Any] | None) -> TokenCounts:
        """From an OpenAI `usage` object (chat, completions, embeddings, and the Responses
        API's, which names prompt and completion input and output). Cache writes come in
        `prompt_tokens_details.cache_creation_tokens`, as translated from Anthropic's usage,
        with `cache_creation.ephemeral_1h_input_tokens` for hour-long ones."""
        usage = usage or {}
        prompt_details = (
            usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
        )
        completion_details = (
            usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
        )
        creation = prompt_details.get("cache_creation")
        return cls(
            prompt=int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0),
            completion=int(usage.get("completion_tokens") or usage.get("output_tokens") or 0),
            cached=int(prompt_details.get("cached_tokens") or 0),
            cache_write=int(prompt_details.get("cache_creation_tokens") or 0),
            cache_write_1h=int(
                (creation.get("ephemeral_1h_input_tokens") if isinstance(creation, dict) else 0)
                or 0
            ),
            reasoning=int(completion_details.get("reasoning_tokens") or 0),
        )
