"""`POST /v1/completions` (legacy text completions) and `POST /v1/embeddings`."""

from __future__ import annotations

from savegate.api.http import HttpRequest, JsonResponse, Response, StreamResponse
from savegate.api.openai.stream import openai_sse
from savegate.api.openai.validate import (
    parse_json_object,
    validate_completion_request,
    validate_embedding_request,
)
from savegate.core.request import ChatRequest
from savegate.keys.model import ApiKey
from savegate.service.completions import CompletionService
from savegate.service.embeddings import EmbeddingService


async def create_completion(
    request: HttpRequest, key: ApiKey, completions: CompletionService
) -> Response:
    body = validate_completion_request(parse_json_object(request.body))
    api_request = ChatRequest(body, request.body, request.context)
    if api_request.stream:
        stream = await completions.stream(api_request)
        return StreamResponse(openai_sse(stream, request.request_id))
    return JsonResponse((await completions.complete(api_request)).raw)


async def create_embedding(
    request: HttpRequest, key: ApiKey, embeddings: EmbeddingService
) -> Response:
    body = validate_embedding_request(parse_json_object(request.body))
    api_request = ChatRequest(body, request.body, request.context)
    return JsonResponse((await embeddings.embed(api_request)).raw)
