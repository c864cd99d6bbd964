"""`POST /v1/responses`, `GET`/`DELETE /v1/responses/{id}` and its `input_items`."""

from __future__ import annotations

from typing import Any

import orjson

from savegate.api.http import HttpRequest, JsonResponse, Response, StreamResponse, json_response
from savegate.api.openai.validate import parse_json_object, validate_chat_request
from savegate.api.responses.convert import chat_body, from_chat, input_items, new_id
from savegate.api.responses.stream import EventTranslator, responses_sse
from savegate.core.errors import InvalidRequest, NotFound
from savegate.core.request import ChatRequest
from savegate.keys.model import ApiKey
from savegate.service.chat import ChatService
from savegate.service.responses import ResponseStore


def _not_found(response_id: str, param: str | None = None) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param=param, code="not_found")


async def create_response(
    request: HttpRequest, key: ApiKey, chat: ChatService, store: ResponseStore
) -> Response:
    body = parse_json_object(request.body)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidRequest("you must provide a model parameter", param="model")
    if body.get("input") is None:
        raise InvalidRequest(
            "Missing required parameter: 'input'.", param="input", code="missing_required_parameter"
        )
    history: list[dict[str, Any]] = []
    previous = body.get("previous_response_id")
    if previous is not None:
        stored = await store.load(key.id, str(previous))
        if stored is None:
            raise _not_found(str(previous), "previous_response_id")
        history = stored.conversation()
    items = [*history, *input_items(body)]
    chat_request_body = validate_chat_request(chat_body(body, items))
    chat_request = ChatRequest(chat_request_body, orjson.dumps(chat_request_body), request.context)
    response_id = new_id("resp")
    keep = body.get("store", True) is not False
    this_turn = input_items(body) if not history else items[len(history) :]

    async def remember(response: dict[str, Any]) -> None:
        if keep:
            store.save(key.id, response, [*history, *this_turn])

    if chat_request.stream:
        stream = await chat.stream(chat_request)
        translator = EventTranslator(response_id, body)
        return StreamResponse(responses_sse(stream, translator, remember, request.request_id))
    answer = await chat.complete(chat_request)
    response = from_chat(response_id, body, answer.data)
    await remember(response)
    return JsonResponse(orjson.dumps(response))


def _response_id(path: str) -> tuple[str, str]:
    rest = path.removeprefix("/v1/responses/")
    response_id, _, tail = rest.partition("/")
    return response_id, tail


async def get_response(request: HttpRequest, key: ApiKey, store: ResponseStore) -> Response:
    response_id, tail = _response_id(request.path)
    stored = await store.load(key.id, response_id)
    if stored is None:
        raise _not_found(response_id)
    if tail == "input_items":
        items = [{"id": item.get("id") or new_id("msg"), **item} for item in stored.input_items]
        return json_response(
            {
                "object": "list",
                "data": items,
                "has_more": False,
                "first_id": items[0]["id"] if items else None,
                "last_id": items[-1]["id"] if items else None,
            }
        )
    if tail:
        raise NotFound(f"Invalid URL ({request.method} {request.path})")
    return json_response(stored.response)


async def delete_response(request: HttpRequest, key: ApiKey, store: ResponseStore) -> Response:
    response_id, tail = _response_id(request.path)
    if tail:
        raise NotFound(f"Invalid URL ({request.method} {request.path})")
    if not await store.delete(key.id, response_id):
        raise _not_found(response_id)
    return json_response({"id": response_id, "object": "response", "deleted": True})
