"""What the HTTP provider adapters share: their provider's transport and one upstream key,
and the relay of a stream that must be translated event by event."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import orjson

from savegate.core.errors import ProviderError
from savegate.core.payload import Json
from savegate.providers import upstream_errors as errors
from savegate.providers.http import Headers, HttpUpstream, Response
from savegate.wire.chunks import Chunks
from savegate.wire.sse import Event


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


class EventTranslator(Protocol):
    """Turns one provider's stream events into OpenAI chunks."""

    finished: bool  # the provider said the answer is complete

    def is_error(self, event: Event, payload: dict[str, Any]) -> bool: ...

    def feed(self, payload: dict[str, Any]) -> list[Json]: ...

    def end(self) -> list[Json]:
        """Chunks for after the last event (the usage chunk)."""
        ...


class TranslatedStream:
    """Relays a translated stream; one that closes before the provider said it finished
    failed, and raises rather than look complete."""

    def __init__(self, http: HttpUpstream, response: Response, translator: EventTranslator) -> None:
        self._http = http
        self._response = response
        self._translator = translator

    def __aiter__(self) -> AsyncIterator[Chunks]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[Chunks]:
        translator = self._translator
        async with contextlib.aclosing(self._http.event_batches(self._response)) as batches:
            async for events in batches:
                chunks: list[Json] = []
                failure = None
                for event in events:
                    if not event.data:
                        continue
                    payload = orjson.loads(event.data)
                    if translator.is_error(event, payload):
                        failure = errors.from_payload(self._http.name, event.data)
                        break
                    chunks.extend(translator.feed(payload))
                if chunks:
                    yield Chunks(chunks)
                if failure is not None:  # after the chunks that came before it
                    raise failure
        if not translator.finished:
            raise ProviderError(
                f"The upstream provider '{self._http.name}' ended the stream before finishing.",
                code="upstream_incomplete",
            )
        last = translator.end()
        if last:
            yield Chunks(last)

    async def aclose(self) -> None:
        self._response.close()  # closed, not released: the upstream stops generating
