"""`POST /v1/responses`, `GET`/`DELETE /v1/responses/{id}` and its `input_items`."""

from __future__ import annotations

from savegate.api.http import (
    HttpRequest,
    Response,
    answer_response,
    stream_response,
)
from savegate.api.relay import Framer
from savegate.api.responses.stream import NativeFramer, ResponsesFramer
from savegate.core.errors import NotFound
from savegate.core.keys import ApiKey
from savegate.service.responses import ResponsesService
from savegate.wire.validate import parse_json_object
from savegate.wire.validate_responses import validate_responses_request


async def create_response(
    request: HttpRequest, key: ApiKey, responses: ResponsesService
) -> Response:
    body = validate_responses_request(parse_json_object(request.body))
    turn = await responses.start(body, request.body, request.context)
    if turn.request.stream:
        reply = await responses.stream(turn)
        framer: Framer = (
            NativeFramer()
            if turn.native is not None
            else ResponsesFramer(turn.response_id, body, turn.remember)
        )
        return stream_response(reply.value, framer, reply.headers, request.request_id)
    answer = await responses.complete(turn)
    return answer_response(answer.value, answer.headers)


def _response_id(request: HttpRequest) -> tuple[str, str]:
    """The id in the path, and what follows it (`input_items` or nothing)."""
    response_id, _, tail = request.path.removeprefix("/v1/responses/").partition("/")
    if tail not in ("", "input_items") or (tail and request.method != "GET"):
        raise NotFound(f"Invalid URL ({request.method} {request.path})")
    return response_id, tail


async def get_response(request: HttpRequest, key: ApiKey, responses: ResponsesService) -> Response:
    response_id, tail = _response_id(request)
    query: bytes = request.scope.get("query_string", b"")
    if tail:
        return answer_response(await responses.input_items(key.id, response_id, query), {})
    return answer_response(await responses.retrieve(key.id, response_id, query), {})


async def delete_response(
    request: HttpRequest, key: ApiKey, responses: ResponsesService
) -> Response:
    response_id, _ = _response_id(request)
    return answer_response(await responses.delete(key.id, response_id), {})
