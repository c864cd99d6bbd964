"""Embeddings: routed like chat, served by providers that have the ability."""

from __future__ import annotations

from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers.base import EmbeddingProvider
from savegate.routing.executor import Capability
from savegate.routing.router import Route
from savegate.service.pipeline import Pipeline, Reply

EMBEDDINGS = Capability("embeddings", lambda provider: isinstance(provider, EmbeddingProvider))


async def embed_route(route: Route, request: ChatRequest) -> Json:
    provider = route.provider
    assert isinstance(provider, EmbeddingProvider)
    return await provider.embed(request, route.upstream_model)


class EmbeddingService:
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    async def embed(self, request: ChatRequest) -> Reply[Json]:
        return await self._pipeline.call(request, "embeddings", embed_route, supports=EMBEDDINGS)
