"""How each endpoint's answers go into the response cache and come out of it.

An entry holds the endpoint's whole answer, whichever way it was first produced: a
streamed answer is folded into the whole object as it passes (`Recording`), and a
streaming request for a cached answer gets it back as the chunks of a stream
(`WholeStream`), which the dialect's framer turns into its wire like any other stream. Each
replay has a fresh `id` and `created`; `model` stays the model that really answered.
Native Responses API answers are the exception: their events are kept and replayed as
the upstream sent them, ids included (`wire.responses_replay`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from savegate.cache import Entry
from savegate.core.payload import Json
from savegate.providers.base import ChatStream
from savegate.wire.chunks import Chunks, WholeStream
from savegate.wire.replay import ChatAssembler, Replayed, TextAssembler, chat_replay, text_replay
from savegate.wire.responses_replay import ResponsesAssembler, answered, response_events


class Assembler(Protocol):
    def feed(self, batch: Chunks) -> None: ...

    def answer(self, usage: dict[str, Any] | None) -> dict[str, Any] | None:
        """The whole answer, None unless the stream ended with one."""
        ...

    @property
    def events(self) -> bytes | None:
        """The stream's own bytes, when they are what a replay sends (else None)."""
        ...


Replayer = Callable[[dict[str, Any], bool], Replayed]


@dataclass(frozen=True, slots=True)
class Codec:
    """An endpoint's answers: the id prefix of a fresh answer (None: answers without
    one), how its stream is folded and unfolded (None: an endpoint that does not stream)."""

    prefix: str | None
    assembler: Callable[[], Assembler] | None = None
    replayer: Replayer | None = None

    def fresh(self, request_id: str) -> tuple[str, int]:
        """A replay's id (made of the request's own, unique as it is) and `created`."""
        assert self.prefix is not None
        return self.prefix + request_id.removeprefix("req_"), int(time.time())

    def kept(self, answer: dict[str, Any]) -> bool:
        """Whether an answer is one to keep."""
        return True

    def whole(self, entry: Entry, request_id: str) -> Json:
        """The answer to a non-streaming request, made of the entry's encoding."""
        if self.prefix is None:
            return Json(raw=entry.encoded(), data=entry.answer)
        return Json(raw=entry.fresh(*self.fresh(request_id)))

    def stream(self, entry: Entry, include_usage: bool, request_id: str) -> ChatStream:
        assert self.replayer is not None
        replayed = entry.replayed(include_usage, self.replayer)
        return WholeStream(replayed.chunks(*self.fresh(request_id)))


@dataclass(frozen=True, slots=True)
class ResponsesCodec(Codec):
    """The Responses API served natively: the upstream's response whole, or its events;
    only responses that answered (`completed`, `incomplete`) are kept."""

    def kept(self, answer: dict[str, Any]) -> bool:
        return answered(answer)

    def stream(self, entry: Entry, include_usage: bool, request_id: str) -> ChatStream:
        if entry.events is not None:
            return WholeStream(Chunks(sse=entry.events))
        return WholeStream(response_events(entry.answer))


CODECS = {
    "chat": Codec("chatcmpl-", ChatAssembler, chat_replay),
    "completions": Codec("cmpl-", TextAssembler, text_replay),
    "embeddings": Codec(None),
    "responses": ResponsesCodec(None, ResponsesAssembler),
}


class Recording:
    """A stream on its way to the client, folded into the whole answer as it passes.
    Once closed, `done` gets the answer (None: the stream did not end whole)."""

    def __init__(
        self,
        stream: ChatStream,
        assembler: Assembler,
        done: Callable[[Assembler | None], Awaitable[None]],
    ) -> None:
        self._stream = stream
        self._assembler = assembler
        self._done = done
        self._whole = False
        self._batches: AsyncGenerator[Chunks, None] | None = None

    def __aiter__(self) -> AsyncIterator[Chunks]:
        if self._batches is None:
            self._batches = self._relay()
        return self._batches

    async def _relay(self) -> AsyncGenerator[Chunks, None]:
        feed = self._assembler.feed
        async for batch in self._stream:
            feed(batch)
            yield batch
        self._whole = True

    async def aclose(self) -> None:
        try:
            if self._batches is not None:
                await self._batches.aclose()
            await self._stream.aclose()
        finally:
            await self._done(self._assembler if self._whole else None)
