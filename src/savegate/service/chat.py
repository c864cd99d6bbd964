"""The chat completion use case: authorise the model → route → call the provider,
metered → hand back the answer.

Answers are neutral: OpenAI-shaped payloads that each ingress dialect frames for its
own clients.
"""

from __future__ import annotations

from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.metering.meter import Meter
from savegate.providers.base import ChatStream
from savegate.routing.router import ModelRouter
from savegate.service.access import route_for


class ChatService:
    def __init__(self, router: ModelRouter, meter: Meter) -> None:
        self._router = router
        self._meter = meter

    async def complete(self, request: ChatRequest) -> Json:
        route = route_for(self._router, request)
        return await self._meter.call(
            request,
            route,
            "chat",
            lambda metered: route.provider.complete(metered, route.upstream_model),
        )

    async def stream(self, request: ChatRequest) -> ChatStream:
        """Open the provider's stream. Failures before the first chunk raise here, before
        the caller has sent a byte, so they can still become an HTTP error status."""
        route = route_for(self._router, request)
        return await self._meter.stream(
            request,
            route,
            "chat",
            lambda metered: route.provider.stream(metered, route.upstream_model),
        )
