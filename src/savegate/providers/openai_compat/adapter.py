"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp server, …).

The upstream already speaks our dialect, so requests go out as the client sent them
(only `model` may be renamed) and stream events are relayed as the upstream's own bytes,
never decoded and re-encoded.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import orjson

from savegate.core.errors import ProviderError
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers.base import Relayed
from savegate.providers.http import HttpUpstream, Response
from savegate.providers.openai_compat.auth import request_headers
from savegate.providers.openai_compat.batches import UpstreamBatches
from savegate.providers.remote import RemoteAdapter, UpstreamBytes, UpstreamReader
from savegate.wire import sse
from savegate.wire.chunks import Chunks
from savegate.wire.content import without_cache_control
from savegate.wire.multipart import Form
from savegate.wire.sse import Event, SSEDecoder

_DONE = b"[DONE]"
_ERROR_EVENT = b'data: {"error"'


class OpenAICompatProvider(RemoteAdapter):
    async def _open(
        self,
        request: ChatRequest,
        model: str,
        path: str = "/chat/completions",
        form: Form | None = None,
    ) -> Response:
        body: bytes | list[bytes | memoryview]
        if form is not None:
            content_type, body = form.encode(model)
        elif request.translated and b'"cache_control"' in request.raw:
            content_type = "application/json"
            body = orjson.dumps({**without_cache_control(request.body), "model": model})
        elif model == request.model:
            content_type, body = "application/json", request.raw
        else:
            content_type, body = "application/json", orjson.dumps({**request.body, "model": model})
        headers = request_headers(self._key, content_type)
        return await self._http.open(path, body, headers, self._observe)

    async def complete(self, request: ChatRequest, model: str) -> Json:
        return Json(raw=await self._http.read(await self._open(request, model)))

    def batches(self) -> UpstreamBatches:
        """The upstream's own Files and Batch APIs, with this adapter's key."""
        return UpstreamBatches(self.name, self._http, self._key)

    async def stream(self, request: ChatRequest, model: str) -> UpstreamStream:
        return UpstreamStream(self._http, await self._open(request, model))

    async def complete_text(self, request: ChatRequest, model: str) -> Json:
        return Json(raw=await self._http.read(await self._open(request, model, "/completions")))

    async def stream_text(self, request: ChatRequest, model: str) -> UpstreamStream:
        return UpstreamStream(self._http, await self._open(request, model, "/completions"))

    async def embed(self, request: ChatRequest, model: str) -> Json:
        return Json(raw=await self._http.read(await self._open(request, model, "/embeddings")))

    async def generate_images(self, request: ChatRequest, model: str) -> Relayed:
        return await self.relay("/images/generations", request, model, None)

    async def relay(
        self, path: str, request: ChatRequest, model: str, form: Form | None
    ) -> Relayed:
        response = await self._open(request, model, path, form)
        content_type = response.headers.get("content-type", "application/json")
        return Relayed(await self._http.read(response), content_type)

    async def relay_stream(
        self, path: str, request: ChatRequest, model: str, form: Form | None
    ) -> UpstreamBytes:
        return UpstreamBytes(self._http, await self._open(request, model, path, form))


class UpstreamStream(UpstreamReader):
    """The upstream's chunks, batched by the read they arrived in; `[DONE]` ends it.

    A read of whole `data:` events in OpenAI's framing is passed on as its own bytes;
    anything else goes through the SSE decoder. An error event, a broken connection or
    an end without `[DONE]` raises ProviderError: a truncated answer must never look
    complete.
    """

    def __init__(self, http: HttpUpstream, response: Response) -> None:
        super().__init__(http, response)
        self._decoder = SSEDecoder()
        self._done = False
        self._failure: ProviderError | None = None  # raised once the chunks before it are out

    async def _read(self) -> AsyncGenerator[Chunks, None]:
        http, response = self._http, self._response
        try:
            while raw := await http.next_read(response):
                batch = self._batch(raw)
                if batch is not None:
                    yield batch
                if self._failure is not None:
                    raise self._failure
                if self._done:
                    return
        finally:
            response.release()
        batch = self._events(self._decoder.flush())
        if batch is not None:
            yield batch
        if self._failure is not None:
            raise self._failure
        if not self._done:
            raise ProviderError(
                f"The upstream provider '{self._http.name}' ended the stream without [DONE].",
                code="upstream_incomplete",
            )

    def _batch(self, raw: bytes) -> Chunks | None:
        if self._decoder.idle:
            ends = raw.endswith(sse.DONE)
            events = raw[: -len(sse.DONE)] if ends else raw
            count = sse.json_data_events(events)
            if (count or not events) and _ERROR_EVENT not in events:
                self._done = ends
                return Chunks(sse=events, count=count) if count else None
        return self._events(self._decoder.decode(raw))

    def _events(self, events: list[Event]) -> Chunks | None:
        chunks: list[Json] = []
        for event in events:
            if event.data == _DONE:
                self._done = True
                break
            if event.event == "error" or event.data.startswith(b'{"error"'):
                self._failure = self._http.payload_error(event.data)
                break
            if event.data:
                chunks.append(Json(raw=event.data))
        return Chunks(chunks) if chunks else None
