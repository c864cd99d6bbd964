"""`POST /v1/messages` and `/v1/messages/count_tokens`: any model behind the gateway, for
clients of the Anthropic SDK."""

from __future__ import annotations

from typing import Any

import orjson

from savegate.api.anthropic.convert import from_openai, to_openai
from savegate.api.anthropic.stream import AnthropicFramer
from savegate.api.http import (
    HttpRequest,
    Response,
    answer_response,
    json_response,
    stream_response,
)
from savegate.core.errors import InvalidRequest
from savegate.core.keys import ApiKey
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.core.tokens import estimate_tokens
from savegate.service.chat import ChatService
from savegate.wire.validate import parse_json_object, validate_chat_request


def _require(body: dict[str, Any], name: str, kind: type, description: str) -> Any:
    value = body.get(name)
    if value is None:
        raise InvalidRequest(f"{name}: Field required", param=name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidRequest(f"{name}: Input should be {description}", param=name)
    return value


def validate_messages_request(body: dict[str, Any]) -> dict[str, Any]:
    _require(body, "model", str, "a valid string")
    messages = _require(body, "messages", list, "a valid list")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise InvalidRequest(
                f"messages.{index}.role: Input should be 'user' or 'assistant'",
                param=f"messages.{index}.role",
            )
        content = message.get("content")
        if not isinstance(content, str | list):
            raise InvalidRequest(
                f"messages.{index}.content: Field required", param=f"messages.{index}.content"
            )
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise InvalidRequest("system: Input should be a valid string or list", param="system")
    return body


def _neutral(request: HttpRequest, body: dict[str, Any]) -> ChatRequest:
    openai_body = to_openai(body)
    validate_chat_request(openai_body)
    return ChatRequest(openai_body, orjson.dumps(openai_body), request.context)


async def create_message(request: HttpRequest, key: ApiKey, chat: ChatService) -> Response:
    body = validate_messages_request(parse_json_object(request.body))
    max_tokens = _require(body, "max_tokens", int, "a valid integer")
    if max_tokens < 1:
        raise InvalidRequest(
            "max_tokens: Input should be greater than or equal to 1", param="max_tokens"
        )
    if not body["messages"]:
        raise InvalidRequest("messages: at least one message is required", param="messages")
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
