"""Embeddings: routed like chat, served by providers that have the ability."""

from __future__ import annotations

from savegate.core.errors import InvalidRequest
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.metering.meter import Meter
from savegate.providers.base import EmbeddingProvider
from savegate.routing.router import ModelRouter
from savegate.service.access import route_for


class EmbeddingService:
    def __init__(self, router: ModelRouter, meter: Meter) -> None:
        self._router = router
        self._meter = meter

    async def embed(self, request: ChatRequest) -> Json:
        route = route_for(self._router, request)
        provider = route.provider
        if not isinstance(provider, EmbeddingProvider):
            raise InvalidRequest(
                f"The model `{request.model}` does not support embeddings.", param="model"
            )
        return await self._meter.call(
            request,
            route,
            "embeddings",
            lambda metered: provider.embed(metered, route.upstream_model),
        )
