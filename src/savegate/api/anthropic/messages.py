"""`POST /v1/messages` and `/v1/messages/count_tokens`: any model behind the gateway, for
clients of the Anthropic SDK."""

from __future__ import annotations

from typing import Any

import orjson

from savegate.api.anthropic.convert import from_openai, to_openai
from savegate.api.anthropic.stream import AnthropicFramer
from savegate.api.anthropic.validate import validate_create_request, validate_messages_request
from savegate.api.http import (
    HttpRequest,
    Response,
    answer_response,
    json_response,
    stream_response,
)
from savegate.core.keys import ApiKey
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.core.tokens import estimate_tokens
from savegate.service.chat import ChatService
from savegate.wire.validate import parse_json_object, validate_chat_request


def _neutral(request: HttpRequest, body: dict[str, Any]) -> ChatRequest:
    openai_body = to_openai(body)
    validate_chat_request(openai_body)
    return ChatRequest(openai_body, orjson.dumps(openai_body), request.context, translated=True)


async def create_message(request: HttpRequest, key: ApiKey, chat: ChatService) -> Response:
    body = validate_create_request(parse_json_object(request.body))
    chat_request = _neutral(request, body)
    if chat_request.stream:
        reply = await chat.stream(chat_request)
        return stream_response(reply.value, AnthropicFramer(), reply.headers, request.request_id)
    answer = await chat.complete(chat_request)
    return answer_response(Json.of(from_openai(answer.value.data)), answer.headers)


async def count_tokens(request: HttpRequest, key: ApiKey) -> Response:
    body = validate_messages_request(parse_json_object(request.body))
    counted = orjson.dumps([body.get("system"), body.get("messages"), body.get("tools")])
    return json_response({"input_tokens": estimate_tokens(counted)})
