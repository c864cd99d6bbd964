"""Anthropic's Messages API behind the OpenAI chat dialect."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import httpx
import orjson

from savegate.core.errors import ProviderError
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers import upstream_errors as errors
from savegate.providers.anthropic.convert import from_anthropic, to_anthropic
from savegate.providers.anthropic.stream import StreamTranslator
from savegate.providers.http import HttpUpstream

API_VERSION = "2023-06-01"


def _is_legacy(request: ChatRequest) -> bool:
    return bool(request.body.get("functions")) and not request.body.get("tools")


class AnthropicProvider:
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
        self._url = self._http.base_url + "/messages"

    async def _open(self, request: ChatRequest, model: str) -> httpx.Response:
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        key = self._key
        if key:
            headers["x-api-key"] = key
        body = orjson.dumps(to_anthropic(request.body, model))
        return await self._http.open(self._url, body, headers, self._observe)

    async def complete(self, request: ChatRequest, model: str) -> Json:
        raw = await self._http.read(await self._open(request, model))
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ProviderError(f"The upstream provider '{self.name}' sent invalid JSON.") from exc
        return Json.of(from_anthropic(message, _is_legacy(request)))

    async def stream(self, request: ChatRequest, model: str) -> AnthropicStream:
        response = await self._open(request, model)
        translator = StreamTranslator(request.include_usage, _is_legacy(request))
        return AnthropicStream(self._http, response, translator)

    async def aclose(self) -> None:
        """The shared transport is closed by its owner, not by each key's adapter."""


class AnthropicStream:
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
                if event.event == "error" or payload.get("type") == "error":
                    raise errors.from_payload(self._http.name, event.data)
                for chunk in self._translator.feed(payload):
                    yield chunk
                if self._translator.finished:
                    return
        raise ProviderError(
            f"The upstream provider '{self._http.name}' ended the stream before message_stop.",
            code="upstream_incomplete",
        )

    async def aclose(self) -> None:
        await self._response.aclose()
