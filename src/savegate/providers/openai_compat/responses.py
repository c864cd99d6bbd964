"""The Responses API natively, for upstreams that serve `/v1/responses` (OpenAI).

The request goes out as the client sent it (only `model` may be renamed) and the events
come back as the upstream's own bytes, so reasoning items, encrypted content and hosted
tools' calls reach the client untouched. Reads are cut at event boundaries only so that
each batch holds whole events: metering finds the usage in `response.completed`.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator, Callable

import orjson

from savegate.core.errors import ProviderError
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers.http import Headers, HttpUpstream, Response
from savegate.providers.openai_compat.adapter import OpenAICompatProvider
from savegate.providers.openai_compat.auth import request_headers
from savegate.providers.remote import UpstreamReader
from savegate.wire.chunks import Chunks
from savegate.wire.sse import Event, SSEDecoder

_PATH = "/responses"
# The events after which the upstream sends nothing more.
_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class OpenAIResponsesProvider(OpenAICompatProvider):
    """An OpenAI-compatible provider that also speaks the Responses API (`responses:
    native` in its config)."""

    def __init__(
        self,
        name: str,
        http: HttpUpstream,
        key: str | None,
        observe: Callable[[Headers], None] | None = None,
    ) -> None:
        super().__init__(name, http, key, observe)
        # Names the upstream account a stored response lives in, never the key itself.
        self.account = hashlib.blake2b(key.encode(), digest_size=8).hexdigest() if key else None

    async def respond(self, request: ChatRequest, model: str) -> Json:
        return Json(raw=await self._http.read(await self._open(request, model, _PATH)))

    async def stream_response(self, request: ChatRequest, model: str) -> ResponsesEventStream:
        return ResponsesEventStream(self._http, await self._open(request, model, _PATH))

    async def stored(self, method: str, path: str) -> Json:
        headers = request_headers(self._key)
        response = await self._http.open(f"{_PATH}/{path}", b"", headers, self._observe, method)
        return Json(raw=await self._http.read(response))


def _event_end(buffer: bytes) -> int:
    """Where the last whole event in `buffer` ends (0: none yet)."""
    ends = [at + len(blank) for blank in (b"\n\n", b"\n\r\n") if (at := buffer.rfind(blank)) >= 0]
    return max(ends, default=0)


def _kind(event: Event) -> str:
    if event.event:
        return event.event
    try:
        return str(orjson.loads(event.data).get("type", ""))
    except (orjson.JSONDecodeError, AttributeError):
        return ""


def _framed(events: list[Event]) -> bytes:
    """Events framed again: only for the few before an error event, cut from the rest."""
    return b"".join(
        [b"event: " + _kind(e).encode() + b"\ndata: " + e.data + b"\n\n" for e in events]
    )


class ResponsesEventStream(UpstreamReader):
    """The upstream's Responses events: each batch is the whole events of the reads so
    far, as items and as the upstream's bytes. An `error` event, a broken connection or
    an end before `response.completed` (or `.incomplete`, `.failed`) raises
    ProviderError: a truncated answer must never look complete."""

    def __init__(self, http: HttpUpstream, response: Response) -> None:
        super().__init__(http, response)
        self._decoder = SSEDecoder()
        self._done = False
        self._failure: ProviderError | None = None  # raised once the events before it are out

    async def _read(self) -> AsyncGenerator[Chunks, None]:
        http, response = self._http, self._response
        held = b""
        try:
            while raw := await http.next_read(response):
                held += raw
                end = _event_end(held)
                if not end:
                    continue
                batch = self._batch(held[:end])
                held = held[end:]
                if batch is not None:
                    yield batch
                if self._failure is not None:
                    raise self._failure
                if self._done:
                    return
        finally:
            response.release()
        if held.strip():  # the last event, without its blank line
            batch = self._batch(held + b"\n\n")
            if batch is not None:
                yield batch
        if self._failure is not None:
            raise self._failure
        if not self._done:
            raise ProviderError(
                f"The upstream provider '{http.name}' ended the stream before the response"
                " completed.",
                code="upstream_incomplete",
            )

    def _batch(self, whole: bytes) -> Chunks | None:
        events = [event for event in self._decoder.decode(whole) if event.data]
        for index, event in enumerate(events):
            kind = _kind(event)
            if kind == "error":
                self._failure = self._error(event.data)
                events = events[:index]
                whole = _framed(events)
                break
            if kind in _ENDS:
                self._done = True
        if not events:
            return None
        return Chunks([Json(raw=event.data) for event in events], sse=whole, count=len(events))

    def _error(self, data: bytes) -> ProviderError:
        try:
            fields = orjson.loads(data)
        except orjson.JSONDecodeError:
            fields = None
        if not isinstance(fields, dict):
            fields = {}
        error = {key: fields.get(key) for key in ("message", "code", "param")}
        return self._http.payload_error(orjson.dumps({"error": error}))
