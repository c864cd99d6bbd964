"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp server, …).

The upstream already speaks our dialect, so requests go out as the client sent them
(only `model` may be renamed) and stream events are relayed as the upstream's own bytes,
never decoded and re-encoded.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import orjson

from savegate.core.errors import ProviderError
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers import upstream_errors as errors
from savegate.providers.http import HttpUpstream, Response
from savegate.providers.remote import RemoteAdapter

_DONE = b"[DONE]"


class OpenAICompatProvider(RemoteAdapter):
    async def _open(
        self, request: ChatRequest, model: str, path: str = "/chat/completions"
    ) -> Response:
        if model == request.model:
            body = request.raw
        else:
            body = orjson.dumps({**request.body, "model": model})
        headers = {"content-type": "application/json"}
        key = self._key
        if key:
            headers["authorization"] = f"Bearer {key}"
        return await self._http.open(self._http.base_url + path, body, headers, self._observe)

    async def complete(self, request: ChatRequest, model: str) -> Json:
        return Json(raw=await self._http.read(await self._open(request, model)))

    async def stream(self, request: ChatRequest, model: str) -> UpstreamStream:
        return UpstreamStream(self._http, await self._open(request, model))

    async def complete_text(self, request: ChatRequest, model: str) -> Json:
        return Json(raw=await self._http.read(await self._open(request, model, "/completions")))

    async def stream_text(self, request: ChatRequest, model: str) -> UpstreamStream:
        return UpstreamStream(self._http, await self._open(request, model, "/completions"))

    async def embed(self, request: ChatRequest, model: str) -> Json:
        return Json(raw=await self._http.read(await self._open(request, model, "/embeddings")))


class UpstreamStream:
    """The upstream's `data:` payloads as they arrive; `[DONE]` ends it.

    An error event, a broken connection or an end without `[DONE]` raises ProviderError:
    a truncated answer must never look complete.
    """

    def __init__(self, http: HttpUpstream, response: Response) -> None:
        self._http = http
        self._response = response

    def __aiter__(self) -> AsyncIterator[Json]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[Json]:
        async with contextlib.aclosing(self._http.events(self._response)) as events:
            async for event in events:
                if event.data == _DONE:
                    return
                if event.event == "error" or event.data.startswith(b'{"error"'):
                    raise errors.from_payload(self._http.name, event.data)
                if event.data:
                    yield Json(raw=event.data)
        raise ProviderError(
            f"The upstream provider '{self._http.name}' ended the stream without [DONE].",
            code="upstream_incomplete",
        )

    async def aclose(self) -> None:
        self._response.close()  # closed, not released: the upstream stops generating
