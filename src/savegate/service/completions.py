"""Legacy text completions: natively where the provider has them, else through chat."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers.base import ChatStream, TextCompletionProvider
from savegate.routing.router import ModelRouter
from savegate.wire import openai_completions as legacy


def _as_chat(request: ChatRequest) -> ChatRequest:
    body = legacy.chat_body(request.body)
    return ChatRequest(body, orjson.dumps(body), request.context)


class CompletionService:
    def __init__(self, router: ModelRouter) -> None:
        self._router = router

    async def complete(self, request: ChatRequest) -> Json:
        route = self._router.resolve(request.model)
        if isinstance(route.provider, TextCompletionProvider):
            return await route.provider.complete_text(request, route.upstream_model)
        answer = await route.provider.complete(_as_chat(request), route.upstream_model)
        return Json.of(legacy.completion(answer.data))

    async def stream(self, request: ChatRequest) -> ChatStream:
        route = self._router.resolve(request.model)
        if isinstance(route.provider, TextCompletionProvider):
            return await route.provider.stream_text(request, route.upstream_model)
        return TextStream(await route.provider.stream(_as_chat(request), route.upstream_model))


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
