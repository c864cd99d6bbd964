"""The chat completion use case: authorise the model → route (with retries and
fallbacks) → call the provider, metered → hand back the answer.

Answers are neutral: OpenAI-shaped payloads that each ingress dialect frames for its
own clients.
"""

from __future__ import annotations

from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers.base import ChatStream
from savegate.routing.executor import Executor
from savegate.service.access import check_model_access


class ChatService:
    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    async def complete(self, request: ChatRequest) -> Json:
        check_model_access(request)
        return await self._executor.call(
            request, "chat", lambda route, r: route.provider.complete(r, route.upstream_model)
        )

    async def stream(self, request: ChatRequest) -> ChatStream:
        """Open a stream. Failures before the first chunk raise here, before the caller
        has sent a byte, so they can still become an HTTP error status."""
        check_model_access(request)
        return await self._executor.stream(
            request, "chat", lambda route, r: route.provider.stream(r, route.upstream_model)
        )
