"""The chat completion use case: the pipeline, calling a provider's chat."""

from __future__ import annotations

from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers.base import ChatStream
from savegate.routing.router import Route
from savegate.service.pipeline import Pipeline, Reply


async def _complete(route: Route, request: ChatRequest) -> Json:
    return await route.provider.complete(request, route.upstream_model)


async def _stream(route: Route, request: ChatRequest) -> ChatStream:
    return await route.provider.stream(request, route.upstream_model)


class ChatService:
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    async def complete(self, request: ChatRequest) -> Reply[Json]:
        return await self._pipeline.call(request, "chat", _complete)

    async def stream(self, request: ChatRequest) -> Reply[ChatStream]:
        return await self._pipeline.stream(request, "chat", _stream)
