"""`POST /v1/chat/completions`."""

from __future__ import annotations

from savegate.api.http import HttpRequest, Response, answer_response, stream_response
from savegate.api.openai.stream import OpenAIFramer
from savegate.core.keys import ApiKey
from savegate.core.request import ChatRequest
from savegate.service.chat import ChatService
from savegate.wire.validate import parse_json_object, validate_chat_request


async def create_chat_completion(request: HttpRequest, key: ApiKey, chat: ChatService) -> Response:
    raw = request.body
    body = validate_chat_request(parse_json_object(raw))
    chat_request = ChatRequest(body, raw, request.context)
    if chat_request.stream:
        reply = await chat.stream(chat_request)
        return stream_response(reply.value, OpenAIFramer(), reply.headers, request.request_id)
    answer = await chat.complete(chat_request)
    return answer_response(answer.value, answer.headers)
