"""Embeddings: routed like chat, served by providers that have the ability."""

from __future__ import annotations

from savegate.core.errors import InvalidRequest
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers.base import EmbeddingProvider
from savegate.routing.router import ModelRouter


class EmbeddingService:
    def __init__(self, router: ModelRouter) -> None:
        self._router = router

    async def embed(self, request: ChatRequest) -> Json:
        route = self._router.resolve(request.model)
        if not isinstance(route.provider, EmbeddingProvider):
            raise InvalidRequest(
                f"The model `{request.model}` does not support embeddings.", param="model"
            )
        return await route.provider.embed(request, route.upstream_model)
