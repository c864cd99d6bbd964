"""What is recorded for every request."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class TokenCounts:
    prompt: int = 0
    completion: int = 0
    cached: int = 0  # cache reads, part of prompt
    cache_write: int = 0  # cache writes, part of prompt
    reasoning: int = 0  # part of completion

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    @classmethod
    def from_openai(cls, usage: dict[str, Any] | None) -> TokenCounts:
        """From an OpenAI `usage` object (chat, completions, embeddings)."""
        usage = usage or {}
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        return cls(
            prompt=int(usage.get("prompt_tokens") or 0),
            completion=int(usage.get("completion_tokens") or 0),
            cached=int(prompt_details.get("cached_tokens") or 0),
            cache_write=int(prompt_details.get("cache_creation_tokens") or 0),
            reasoning=int(completion_details.get("reasoning_tokens") or 0),
        )


@dataclass(slots=True)
class UsageRecord:
    request_id: str
    key_id: str
    endpoint: str
    requested_model: str
    stream: bool
    model: str | None = None
    provider: str | None = None
    tokens: TokenCounts = field(default_factory=TokenCounts)
    cost_usd: float = 0.0
    list_cost_usd: float = 0.0
    latency_ms: float | None = None
    ttft_ms: float | None = None
    status: int = 200
    error_type: str | None = None
    cache_hit: bool = False
    client_disconnected: bool = False
    estimated: bool = False
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def row(self) -> dict[str, Any]:
        # Spelled out rather than dataclasses.asdict(), which deep-copies: this runs for
        # every request.
        tokens = self.tokens
        return {
            "request_id": self.request_id,
            "key_id": self.key_id,
            "created_at": self.created_at,
            "endpoint": self.endpoint,
            "requested_model": self.requested_model,
            "model": self.model,
            "provider": self.provider,
            "prompt_tokens": tokens.prompt,
            "cached_tokens": tokens.cached,
            "completion_tokens": tokens.completion,
            "reasoning_tokens": tokens.reasoning,
            "cost_usd": self.cost_usd,
            "list_cost_usd": self.list_cost_usd,
            "latency_ms": self.latency_ms,
            "ttft_ms": self.ttft_ms,
            "stream": self.stream,
            "status": self.status,
            "error_type": self.error_type,
            "cache_hit": self.cache_hit,
            "client_disconnected": self.client_disconnected,
            "estimated": self.estimated,
        }
