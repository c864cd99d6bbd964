"""`POST /v1/completions` (legacy text completions) and `POST /v1/embeddings`."""

from __future__ import annotations

from savegate.api.http import HttpRequest, Response, answer_response, stream_response
from savegate.api.openai.stream import OpenAIFramer
from savegate.core.keys import ApiKey
from savegate.core.request import ChatRequest
from savegate.service.completions import CompletionService
from savegate.service.embeddings import EmbeddingService
from savegate.wire.validate import (
    parse_json_object,
    validate_completion_request,
    validate_embedding_request,
)


async def create_completion(
    request: HttpRequest, key: ApiKey, completions: CompletionService
) -> Response:
    body = validate_completion_request(parse_json_object(request.body))
    api_request = ChatRequest(body, request.body, request.context)
    if api_request.stream:
        reply = await completions.stream(api_request)
        return stream_response(reply.value, OpenAIFramer(), reply.headers, request.request_id)
    answer = await completions.complete(api_request)
    return answer_response(answer.value, answer.headers)


async def create_embedding(
    request: HttpRequest, key: ApiKey, embeddings: EmbeddingService
) -> Response:
    body = validate_embedding_request(parse_json_object(request.body))
    answer = await embeddings.embed(ChatRequest(body, request.body, request.context))
    return answer_response(answer.value, answer.headers)
