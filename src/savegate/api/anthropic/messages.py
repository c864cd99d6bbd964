"""`POST /v1/messages` and `/v1/messages/count_tokens`: any model behind the gateway, for
clients of the Anthropic SDK."""

from __future__ import annotations

from typing import Any

import orjson

from savegate.api.anthropic.convert import from_openai, to_openai
from savegate.api.anthropic.stream import anthropic_sse
from savegate.api.http import HttpRequest, JsonResponse, Response, StreamResponse, json_response
from savegate.api.openai.validate import parse_json_object, validate_chat_request
from savegate.core.errors import InvalidRequest
from savegate.core.request import ChatRequest
from savegate.keys.model import ApiKey
from savegate.service.chat import ChatService


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


def _neutral(request: HttpRequest, key: ApiKey, body: dict[str, Any]) -> ChatRequest:
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
    chat_request = _neutral(request, key, body)
    if chat_request.stream:
        return StreamResponse(anthropic_sse(await chat.stream(chat_request), request.request_id))
    answer = await chat.complete(chat_request)
    return JsonResponse(orjson.dumps(from_openai(answer.data)))


def _estimate_tokens(body: dict[str, Any]) -> int:
    # No tokenizer is shared by every backend; about four characters a token is the
    # usual estimate for English text and JSON.
    text = orjson.dumps([body.get("system"), body.get("messages"), body.get("tools")])
    return max(1, len(text) // 4)


async def count_tokens(request: HttpRequest, key: ApiKey) -> Response:
    body = validate_messages_request(parse_json_object(request.body))
    return json_response({"input_tokens": _estimate_tokens(body)})
