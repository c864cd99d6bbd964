"""One cached answer, and what a store of them offers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from savegate.core.usage import TokenCounts


class CacheUnavailable(Exception):
    """The store cannot be reached: the request goes on uncached."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A whole answer in the endpoint's neutral form (a `chat.completion`, a legacy
    `text_completion`, an embeddings list), who really answered it, and what it cost at
    list price: a hit's saving. Shared by every hit: never changed once made."""

    answer: dict[str, Any]
    provider: str | None
    list_cost_usd: float
    size: int = field(default=0, compare=False)
    tokens: TokenCounts = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # Read once, not on every hit.
        object.__setattr__(self, "tokens", TokenCounts.from_openai(self.answer.get("usage")))

    @classmethod
    def make(
        cls,
        answer: dict[str, Any],
        provider: str | None,
        list_cost_usd: float,
    ) -> tuple[Entry, bytes]:
        """A new entry, and its encoding (whose length is its size)."""
        raw = cls(answer, provider, list_cost_usd).encode()
        return cls(answer, provider, list_cost_usd, len(raw)), raw

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "answer": self.answer,
                "provider": self.provider,
                "list_cost_usd": self.list_cost_usd,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        data = orjson.loads(raw)
        return cls(
            data["answer"],
            data["provider"],
            float(data["list_cost_usd"]),
            len(raw),
        )


class CacheBackend(Protocol):
    async def get(self, key: str) -> Entry | None:
        """The live entry under `key`, or None; raises CacheUnavailable."""
        ...

    async def put(self, key: str, entry: Entry, raw: bytes) -> None:
        """Keep `entry` (`raw`: its encoding) for the TTL; raises CacheUnavailable."""
        ...

    async def claim(self, key: str) -> bool:
        """Whether this process may make the call for `key`, no other process making it
        (True where the store is this process's own)."""
        ...

    async def release(self, key: str) -> None:
        """The call `claim` allowed is over."""
        ...

    async def aclose(self) -> None: ...
