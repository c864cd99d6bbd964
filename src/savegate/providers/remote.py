"""What the HTTP provider adapters share: their provider's transport and one upstream key,
and the relay of a stream that must be translated event by event."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Protocol

import orjson

from savegate.core.errors import ProviderError
from savegate.core.payload import Json
from savegate.providers.http import Headers, HttpUpstream, Response
from savegate.wire.chunks import Chunks
from savegate.wire.sse import Event, SSEDecoder


class RemoteAdapter:
    def __init__(
        self,
        name: str,
        http: HttpUpstream,
        key: str | None,
        observe: Callable[[Headers], None] | None = None,
    ) -> None:
        self.name = name
        self._http = http
        self._key = key
        self._observe = observe

    async def _read_json(self, response: Response) -> Any:
        raw = await self._http.read(response)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ProviderError(f"The upstream provider '{self.name}' sent invalid JSON.") from exc

    async def aclose(self) -> None:
        """Nothing of its own: the shared transport is closed by its owner."""


class UpstreamBytes:
    """An upstream body relayed read by read, as its own bytes (audio, events passed
    through); closing it before the end closes the connection, so the upstream stops."""

    def __init__(self, http: HttpUpstream, response: Response) -> None:
        self.content_type = response.headers.get("content-type", "application/octet-stream")
        self._http = http
        self._response = response
        self._reads: AsyncGenerator[bytes, None] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._reads is None:
            self._reads = self._read()
        return self._reads

    async def _read(self) -> AsyncGenerator[bytes, None]:
        try:
            while raw := await self._http.next_read(self._response):
                yield raw
        finally:
            self._response.release()

    async def aclose(self) -> None:
        if self._reads is not None:
            await self._reads.aclose()
        self._response.close()


class EventTranslator(Protocol):
    """Turns one provider's stream events into OpenAI chunks."""

    finished: bool  # the provider said the answer is complete

    def is_error(self, event: Event, payload: dict[str, Any]) -> bool: ...

    def feed(self, payload: dict[str, Any]) -> list[Json]:
        """The chunks of one event; raises `ProviderError` when the event says the
        answer failed."""
        ...

    def end(self) -> list[Json]:
        """Chunks for after the last event (the usage chunk)."""
        ...


class UpstreamReader:
    """A streamed upstream answer, read as batches of chunks by one generator (`_read`,
    each reader's own) that is closed with the stream: closing before the end closes the
    connection rather than releasing it, so the upstream stops generating."""

    def __init__(self, http: HttpUpstream, response: Response) -> None:
        self._http = http
        self._response = response
        self._batches: AsyncGenerator[Chunks, None] | None = None

    def __aiter__(self) -> AsyncIterator[Chunks]:
        if self._batches is None:
            self._batches = self._read()
        return self._batches

    def _read(self) -> AsyncGenerator[Chunks, None]:
        raise NotImplementedError

    async def aclose(self) -> None:
        if self._batches is not None:
            await self._batches.aclose()
        self._response.close()


class TranslatedStream(UpstreamReader):
    """Relays a translated stream; one that closes before the provider said it finished
    failed, and raises rather than look complete."""

    def __init__(self, http: HttpUpstream, response: Response, translator: EventTranslator) -> None:
        super().__init__(http, response)
        self._translator = translator

    async def _read(self) -> AsyncGenerator[Chunks, None]:
        http, response = self._http, self._response
        decoder = SSEDecoder()
        try:
            while raw := await http.next_read(response):
                chunks, failure = self._translate(decoder.decode(raw))
                if chunks:
                    yield Chunks(chunks)
                if failure is not None:  # after the chunks that came before it
                    raise failure
        finally:
            response.release()
        chunks, failure = self._translate(decoder.flush())
        if chunks:
            yield Chunks(chunks)
        if failure is not None:
            raise failure
        translator = self._translator
        if not translator.finished:
            raise ProviderError(
                f"The upstream provider '{self._http.name}' ended the stream before finishing.",
                code="upstream_incomplete",
            )
        last = translator.end()
        if last:
            yield Chunks(last)

    def _translate(self, events: list[Event]) -> tuple[list[Json], ProviderError | None]:
        """The chunks of `events`, up to an error event (returned as the failure)."""
        translator = self._translator
        chunks: list[Json] = []
        for event in events:
            if not event.data:
                continue
            payload = orjson.loads(event.data)
            if translator.is_error(event, payload):
                return chunks, self._http.payload_error(event.data)
            try:
                chunks.extend(translator.feed(payload))
            except ProviderError as failure:
                return chunks, failure
        return chunks, None
