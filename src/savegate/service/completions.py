"""Legacy text completions: natively where the provider has them, else through chat."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers.base import ChatStream, TextCompletionProvider
from savegate.routing.router import Route
from savegate.service.pipeline import Pipeline, Reply
from savegate.wire import openai_completions as legacy
from savegate.wire.chunks import Chunks


def _as_chat(request: ChatRequest) -> ChatRequest:
    return request.with_body(legacy.chat_body(request.body))


async def _complete(route: Route, request: ChatRequest) -> Json:
    provider, model = route.provider, route.upstream_model
    if isinstance(provider, TextCompletionProvider):
        return await provider.complete_text(request, model)
    answer = await provider.complete(_as_chat(request), model)
    return Json.of(legacy.completion(answer.data))


async def _stream(route: Route, request: ChatRequest) -> ChatStream:
    provider, model = route.provider, route.upstream_model
    if isinstance(provider, TextCompletionProvider):
        return await provider.stream_text(request, model)
    return TextStream(await provider.stream(_as_chat(request), model))


class CompletionService:
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    async def complete(self, request: ChatRequest) -> Reply[Json]:
        return await self._pipeline.call(request, "completions", _complete)

    async def stream(self, request: ChatRequest) -> Reply[ChatStream]:
        return await self._pipeline.stream(request, "completions", _stream)


class TextStream:
    """A chat stream seen as a text completion stream."""

    def __init__(self, chat: ChatStream) -> None:
        self._chat = chat
        self._batches: AsyncGenerator[Chunks, None] | None = None

    def __aiter__(self) -> AsyncIterator[Chunks]:
        if self._batches is None:
            self._batches = self._relay()
        return self._batches

    async def _relay(self) -> AsyncGenerator[Chunks, None]:
        async for batch in self._chat:
            text_chunks = [legacy.chunk(chat_chunk.data) for chat_chunk in batch]
            chunks = [Json.of(chunk) for chunk in text_chunks if chunk is not None]
            if chunks:
                yield Chunks(chunks)

    async def aclose(self) -> None:
        if self._batches is not None:
            await self._batches.aclose()
        await self._chat.aclose()
