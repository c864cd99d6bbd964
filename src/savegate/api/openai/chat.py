"""`POST /v1/chat/completions`."""

from __future__ import annotations

from savegate.api.http import HttpRequest, JsonResponse, Response, StreamResponse
from savegate.api.openai.stream import openai_sse
from savegate.api.openai.validate import parse_json_object, validate_chat_request
from savegate.core.request import ChatRequest
from savegate.keys.model import ApiKey
from savegate.service.chat import ChatService


async def create_chat_completion(request: HttpRequest, key: ApiKey, chat: ChatService) -> Response:
    raw = request.body
    body = validate_chat_request(parse_json_object(raw))
    chat_request = ChatRequest(body, raw, request.context)
    if chat_request.stream:
        return StreamResponse(openai_sse(await chat.stream(chat_request), request.request_id))
    answer = await chat.complete(chat_request)
    return JsonResponse(answer.raw)
