"""A batch of stream chunks: those that arrived together in one upstream read.

Streams move in batches so that what is paid per step (a generator hop per layer, an
ASGI send, a socket write) is paid once per upstream read rather than once per chunk.
A batch relayed from an OpenAI-compatible upstream keeps the upstream's own SSE bytes:
on the usual path they are forwarded without being split, parsed or re-encoded. The SSE
bytes may also be named events (the Responses API's, with `event:` lines).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from savegate.core.payload import Json
from savegate.wire import sse


class Chunks:
    """OpenAI `chat.completion.chunk` payloads, as items or as `data:` events, each form
    made from the other only when someone asks for it."""

    __slots__ = ("_count", "_items", "_sse")

    def __init__(
        self, items: list[Json] | None = None, *, sse: bytes | None = None, count: int = 0
    ) -> None:
        """`count` is how many events `sse` holds, when the caller already knows."""
        if items is None and sse is None:
            raise ValueError("a batch needs its items or its SSE bytes")
        self._items = items
        self._sse = sse
        self._count = count

    @property
    def items(self) -> list[Json]:
        if self._items is None:
            assert self._sse is not None
            self._items = [Json(raw=payload) for payload in sse.payloads(self._sse)]
        return self._items

    @property
    def sse(self) -> bytes:
        """The batch framed as OpenAI SSE `data:` events."""
        if self._sse is None:
            self._sse = b"".join([sse.data_event(chunk.raw) for chunk in self.items])
        return self._sse

    def occurrences(self, needle: bytes) -> int:
        """How often the chunks' JSON holds `needle`: a cheap test before parsing."""
        if self._sse is not None:
            return self._sse.count(needle)
        return sum(chunk.raw.count(needle) for chunk in self.items)

    def split_last(self) -> tuple[Chunks | None, Json]:
        """The chunks before the last one (None if there are none), and the last one;
        SSE bytes are cut, not re-encoded."""
        if self._items is not None:
            items = self._items
            return (Chunks(items[:-1]) if len(items) > 1 else None), items[-1]
        assert self._sse is not None
        separator = self._sse.rfind(b"\n\ndata: ", 0, -2)
        start = separator + 2 if separator >= 0 else 0
        last = Json(raw=self._sse[start + 6 : -2])
        head = Chunks(sse=self._sse[:start], count=max(0, self._count - 1)) if start else None
        return head, last

    def __len__(self) -> int:
        if self._items is not None:
            return len(self._items)
        assert self._sse is not None
        if not self._count:
            self._count = self._sse.count(b"\n\n")
        return self._count

    def __iter__(self) -> Iterator[Json]:
        return iter(self.items)


class WholeStream:
    """A stream whose chunks are all at hand (a cached answer): one batch, which the
    HTTP layer may frame and send in one write rather than chunk by chunk."""

    __slots__ = ("batch",)

    def __init__(self, batch: Chunks) -> None:
        self.batch = batch

    def __aiter__(self) -> AsyncIterator[Chunks]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[Chunks]:
        yield self.batch

    async def aclose(self) -> None:
        return None
