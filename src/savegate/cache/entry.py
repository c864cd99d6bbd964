"""One cached answer, and what a store of them offers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from savegate.core.usage import TokenCounts

if TYPE_CHECKING:
    from savegate.wire.replay import Replayed


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
    _pieces: tuple[bytes, bytes, bytes, bool] | None = field(
        default=None, init=False, compare=False, repr=False
    )
    _encoded: bytes | None = field(default=None, init=False, compare=False, repr=False)
    _replays: dict[bool, Replayed] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        # Read once, not on every hit.
        object.__setattr__(self, "tokens", TokenCounts.from_openai(self.answer.get("usage")))

    def encoded(self) -> bytes:
        """The answer's JSON, encoded at its first hit for every other."""
        if self._encoded is None:
            object.__setattr__(self, "_encoded", orjson.dumps(self.answer))
        assert self._encoded is not None
        return self._encoded

    def fresh(self, id: str, created: int) -> bytes:
        """The JSON of `{**answer, "id": id, "created": created}`: the answer's own
        encoding, cut once around those two values, with these spliced in."""
        if self._pieces is None:
            object.__setattr__(self, "_pieces", _cut(self.answer))
        assert self._pieces is not None
        head, middle, tail, id_first = self._pieces
        id_json, created_json = orjson.dumps(id), b"%d" % created
        if id_first:
            return b"".join((head, id_json, middle, created_json, tail))
        return b"".join((head, created_json, middle, id_json, tail))

    def replayed(
        self, include_usage: bool, make: Callable[[dict[str, Any], bool], Replayed]
    ) -> Replayed:
        """The answer as a stream (with its usage chunk or without), made by `make` at the
        first such replay for every other."""
        replayed = self._replays.get(include_usage)
        if replayed is None:
            replayed = self._replays[include_usage] = make(self.answer, include_usage)
        return replayed

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


def _cut(answer: dict[str, Any]) -> tuple[bytes, bytes, bytes, bool]:
    """The encoding of `{**answer, "id": …, "created": …}` (each in its place, or last
    when the answer has none) cut where those two values go, and whether `id` comes
    first: orjson writes an object as its fields in order, each `"name":value`."""
    pieces: list[bytes] = []
    current = [b"{"]
    id_first = True
    for index, (name, value) in enumerate({**answer, "id": None, "created": None}.items()):
        if index:
            current.append(b",")
        current += (orjson.dumps(name), b":")
        if name in ("id", "created"):
            if not pieces:
                id_first = name == "id"
            pieces.append(b"".join(current))
            current = []
        else:
            current.append(orjson.dumps(value))
    current.append(b"}")
    head, middle = pieces
    return head, middle, b"".join(current), id_first


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
