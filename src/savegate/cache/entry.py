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
    `text_completion`, an embeddings list, a Responses API `response`), who really
    answered it, and what it cost at list price: a hit's saving; and, for an answer
    replayed as it came (the Responses API served natively), the stream's own bytes when
    it was streamed. Shared by every hit: never changed once made."""

    answer: dict[str, Any]
    provider: str | None
    list_cost_usd: float
    size: int = field(default=0, compare=False)
    events: bytes | None = None
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
        events: bytes | None = None,
    ) -> tuple[Entry, bytes]:
        """A new entry, and its encoding (whose length is its size); `events` must be
        UTF-8, as SSE is."""
        raw = cls(answer, provider, list_cost_usd, events=events).encode()
        return cls(answer, provider, list_cost_usd, len(raw), events), raw

    def encode(self) -> bytes:
        data: dict[str, Any] = {
            "answer": self.answer,
            "provider": self.provider,
            "list_cost_usd": self.list_cost_usd,
        }
        if self.events is not None:
            data["events"] = self.events.decode()
        return orjson.dumps(data)

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        data = orjson.loads(raw)
        events = data.get("events")
        return cls(
            data["answer"],
            data["provider"],
            float(data["list_cost_usd"]),
            len(raw),
            events.encode() if isinstance(events, str) else None,
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
