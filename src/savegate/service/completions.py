"""Legacy text completions: natively where the provider has them, else through chat."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.metering.meter import Meter
from savegate.providers.base import ChatStream, TextCompletionProvider
from savegate.routing.router import ModelRouter
from savegate.service.access import route_for
from savegate.wire import openai_completions as legacy


def _as_chat(request: ChatRequest) -> ChatRequest:
    body = legacy.chat_body(request.body)
    return ChatRequest(body, orjson.dumps(body), request.context)


class CompletionService:
    def __init__(self, router: ModelRouter, meter: Meter) -> None:
        self._router = router
        self._meter = meter

    async def complete(self, request: ChatRequest) -> Json:
        route = route_for(self._router, request)
        provider, model = route.provider, route.upstream_model
        if isinstance(provider, TextCompletionProvider):
            return await self._meter.call(
                request, route, "completions", lambda r: provider.complete_text(r, model)
            )
        answer = await self._meter.call(
            _as_chat(request), route, "completions", lambda r: provider.complete(r, model)
        )
        return Json.of(legacy.completion(answer.data))

    async def stream(self, request: ChatRequest) -> ChatStream:
        route = route_for(self._router, request)
        provider, model = route.provider, route.upstream_model
        if isinstance(provider, TextCompletionProvider):
            return await self._meter.stream(
                request, route, "completions", lambda r: provider.stream_text(r, model)
            )
        chat = await self._meter.stream(
            _as_chat(request), route, "completions", lambda r: provider.stream(r, model)
        )
        return TextStream(chat)


class TextStream:
    """A chat stream seen as a text completion stream."""

    def __init__(self, chat: ChatStream) -> None:
        self._chat = chat

    def __aiter__(self) -> AsyncIterator[Json]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[Json]:
        async for chat_chunk in self._chat:
            text_chunk = legacy.chunk(chat_chunk.data)
            if text_chunk is not None:
                yield Json.of(text_chunk)

    async def aclose(self) -> None:
        await self._chat.aclose()
