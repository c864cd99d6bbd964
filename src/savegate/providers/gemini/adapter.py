"""Google Gemini (`generateContent`) behind the OpenAI chat dialect."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import httpx
import orjson

from savegate.core.errors import ProviderError
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers import upstream_errors as errors
from savegate.providers.gemini.convert import from_gemini, to_gemini
from savegate.providers.gemini.stream import StreamTranslator
from savegate.providers.http import HttpUpstream


def _is_legacy(request: ChatRequest) -> bool:
    return bool(request.body.get("functions")) and not request.body.get("tools")


class GeminiProvider:
    def __init__(
        self,
        name: str,
        http: HttpUpstream,
        key: str | None,
        observe: Callable[[httpx.Headers], None] | None = None,
    ) -> None:
        self.name = name
        self._http = http
        self._key = key
        self._observe = observe

    async def _open(self, request: ChatRequest, model: str, method: str) -> httpx.Response:
        headers = {"content-type": "application/json"}
        key = self._key
        if key:
            headers["x-goog-api-key"] = key
        url = f"{self._http.base_url}/models/{model}:{method}"
        return await self._http.open(
            url, orjson.dumps(to_gemini(request.body)), headers, self._observe
        )

    async def complete(self, request: ChatRequest, model: str) -> Json:
        raw = await self._http.read(await self._open(request, model, "generateContent"))
        try:
            response = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ProviderError(f"The upstream provider '{self.name}' sent invalid JSON.") from exc
        return Json.of(from_gemini(response, model, _is_legacy(request)))

    async def stream(self, request: ChatRequest, model: str) -> GeminiStream:
        response = await self._open(request, model, "streamGenerateContent?alt=sse")
        translator = StreamTranslator(model, request.include_usage, _is_legacy(request))
        return GeminiStream(self._http, response, translator)

    async def aclose(self) -> None:
        """The shared transport is closed by its owner, not by each key's adapter."""


class GeminiStream:
    """Gemini ends a stream by closing it: a stream closed before any finishReason failed."""

    def __init__(
        self, http: HttpUpstream, response: httpx.Response, translator: StreamTranslator
    ) -> None:
        self._http = http
        self._response = response
        self._translator = translator

    def __aiter__(self) -> AsyncIterator[Json]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[Json]:
        async with contextlib.aclosing(self._http.events(self._response)) as events:
            async for event in events:
                if not event.data:
                    continue
                payload = orjson.loads(event.data)
                if "error" in payload:
                    raise errors.from_payload(self._http.name, event.data)
                for chunk in self._translator.feed(payload):
                    yield chunk
        if not self._translator.finished:
            raise ProviderError(
                f"The upstream provider '{self._http.name}' ended the stream before finishing.",
                code="upstream_incomplete",
            )
        for chunk in self._translator.end():
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()
