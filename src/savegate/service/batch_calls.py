"""One batch line, answered by the same use case a live request to its endpoint calls:
the same validation, access checks, rate limits, budget, routing and metering."""

from __future__ import annotations

from typing import Any

import orjson

from savegate.core.errors import InvalidRequest
from savegate.core.payload import Json
from savegate.core.request import ChatRequest, RequestContext
from savegate.service.chat import ChatService
from savegate.service.completions import CompletionService
from savegate.service.embeddings import EmbeddingService
from savegate.service.responses import ResponsesService
from savegate.wire.validate import (
    validate_chat_request,
    validate_completion_request,
    validate_embedding_request,
)
from savegate.wire.validate_responses import validate_responses_request


class BatchCalls:
    def __init__(
        self,
        chat: ChatService,
        completions: CompletionService,
        embeddings: EmbeddingService,
        responses: ResponsesService,
    ) -> None:
        self._chat = chat
        self._completions = completions
        self._embeddings = embeddings
        self._responses = responses

    async def call(self, endpoint: str, body: dict[str, Any], context: RequestContext) -> Json:
        """The answer to `body` sent to `endpoint`, or the GatewayError a client would get."""
        if body.get("stream"):
            raise InvalidRequest("Streaming is not supported in batches.", param="stream")
        raw = orjson.dumps(body)
        if endpoint == "/v1/chat/completions":
            request = ChatRequest(validate_chat_request(body), raw, context)
            return (await self._chat.complete(request)).value
        if endpoint == "/v1/completions":
            request = ChatRequest(validate_completion_request(body), raw, context)
            return (await self._completions.complete(request)).value
        if endpoint == "/v1/embeddings":
            request = ChatRequest(validate_embedding_request(body), raw, context)
            return (await self._embeddings.embed(request)).value
        turn = await self._responses.start(validate_responses_request(body), raw, context)
        return (await self._responses.complete(turn)).value
