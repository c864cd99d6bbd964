"""The chat completion use case: route → call the provider → hand back the answer.

(Authentication happens before, in the HTTP layer; limits and usage accounting join
this pipeline here.) Answers are neutral: OpenAI-shaped payloads that each ingress
dialect frames for its own clients.
"""

from __future__ import annotations

from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers.base import ChatStream
from savegate.routing.router import ModelRouter


class ChatService:
    def __init__(self, router: ModelRouter) -> None:
        self._router = router

    async def complete(self, request: ChatRequest) -> Json:
        route = self._router.resolve(request.model)
        return await route.provider.complete(request, route.upstream_model)

    async def stream(self, request: ChatRequest) -> ChatStream:
        """Open the provider's stream. Failures before the first chunk raise here, before
        the caller has sent a byte, so they can still become an HTTP error status."""
        route = self._router.resolve(request.model)
        return await route.provider.stream(request, route.upstream_model)
