"""The Responses API for the fake OpenAI upstream, in OpenAI's documented shapes.

`POST /v1/responses` answers with a reasoning item with encrypted content, a
`web_search_call` when the request has the hosted tool, then the answer, and usage in
`response.completed`. The model name picks the behaviour: `resp-error-after-<n>` sends n
events then an `error` event; `resp-split` writes every event in two pieces (cut
mid-line); anything else answers normally.

Each response has an id of its own and, unless the request said `store: false`, is kept
under the upstream key that made it (its `authorization`), as OpenAI keeps it in the
account: `GET`/`DELETE /v1/responses/{id}` and `GET /v1/responses/{id}/input_items`
(`limit`, `order`, `after`) read and delete it with that key only, and so does a
`previous_response_id` naming it. Those calls are logged in `stored`.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import parse_qs

import orjson

ANSWER = "Hello from the Responses API."
USAGE = {
    "input_tokens": 21,
    "input_tokens_details": {"cached_tokens": 5},
    "output_tokens": 9,
    "output_tokens_details": {"reasoning_tokens": 4},
    "total_tokens": 30,
}


# What the upstream keeps: (authorization, response id) -> the response and its input items.
STORED: dict[tuple[str | None, str], tuple[dict[str, Any], list[dict[str, Any]]]] = {}


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def _response(
    request: dict[str, Any], response_id: str, status: str, output: list[dict[str, Any]]
) -> dict:
    return {
        "id": response_id,
        "object": "response",
        "created_at": 1750000000,
        "status": status,
        "model": f"{request['model']}-2025-01-01",
        "output": output,
        "previous_response_id": request.get("previous_response_id"),
        "store": request.get("store", True),
        "tools": request.get("tools") or [],
        "usage": USAGE if status == "completed" else None,
    }


def _items(request: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [
        {"type": "reasoning", "id": "rs_fake", "summary": [], "encrypted_content": "enc-fake-1"}
    ]
    if any(tool.get("type") == "web_search" for tool in request.get("tools") or []):
        items.append(
            {
                "type": "web_search_call",
                "id": "ws_fake",
                "status": "completed",
                "action": {"type": "search", "query": "weather"},
            }
        )
    items.append(
        {
            "type": "message",
            "id": "msg_fake",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": ANSWER, "annotations": []}],
        }
    )
    return items


def body(request: dict[str, Any], response_id: str) -> dict[str, Any]:
    """The response to `request`, named `response_id`."""
    return _response(request, response_id, "completed", _items(request))


def events(request: dict[str, Any], response_id: str) -> list[bytes]:
    started = _response(request, response_id, "in_progress", [])
    payloads: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
    ]
    items = _items(request)
    for index, item in enumerate(items):
        payloads.append({"type": "response.output_item.added", "output_index": index, "item": item})
        if item["type"] == "message":
            for word in ANSWER.split(" "):
                payloads.append(
                    {
                        "type": "response.output_text.delta",
                        "item_id": item["id"],
                        "output_index": index,
                        "content_index": 0,
                        "delta": word if word == ANSWER.split(" ")[0] else " " + word,
                    }
                )
        payloads.append({"type": "response.output_item.done", "output_index": index, "item": item})
    payloads.append({"type": "response.completed", "response": body(request, response_id)})
    return [
        b"event: %s\ndata: %s\n\n"
        % (payload["type"].encode(), orjson.dumps({**payload, "sequence_number": n}))
        for n, payload in enumerate(payloads)
    ]


def streamed_id(raw: bytes) -> str:
    """The id of the response a stream of events made (in its first event)."""
    first = raw.split(b"\n\n", 1)[0].split(b"data: ", 1)[1]
    return str(orjson.loads(first)["response"]["id"])


def input_items(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's input as the items OpenAI lists: each with an id and a status, a
    message's text as content parts."""
    value = request.get("input") or []
    if isinstance(value, str):
        value = [{"type": "message", "role": "user", "content": value}]
    items = []
    for item in value:
        listed = {**item, "id": item.get("id") or new_id("msg")}
        if item.get("type", "message") == "message":
            content = item["content"]
            if isinstance(content, str):
                part = {"type": "input_text", "text": content}
                if item["role"] == "assistant":
                    part = {"type": "output_text", "text": content, "annotations": []}
                content = [part]
            listed.update(type="message", content=content, status="completed")
        items.append(listed)
    return items


async def _json(send: Any, status: int, payload: Any) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": orjson.dumps(payload)})


def _error(message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }


async def handle(request: dict[str, Any], authorization: str | None, send: Any) -> None:
    model: str = request["model"]
    previous = request.get("previous_response_id")
    if previous is not None and (authorization, previous) not in STORED:
        await _json(
            send,
            404,
            _error(
                f"Previous response with id '{previous}' not found.",
                "previous_response_id",
                "previous_response_not_found",
            ),
        )
        return
    response_id = new_id("resp")
    failed = model.startswith("resp-error-after-")
    if request.get("store", True) is not False:
        kept = (
            _response(request, response_id, "failed", []) if failed else body(request, response_id)
        )
        STORED[authorization, response_id] = (kept, input_items(request))
    if not request.get("stream"):
        await _json(send, 200, body(request, response_id))
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
        }
    )
    stream = events(request, response_id)
    if failed:
        count = int(model.removeprefix("resp-error-after-"))
        fault = {"type": "error", "code": "fake_mid", "message": "fake upstream failed mid-stream"}
        stream = [
            *stream[:count],
            b"event: error\ndata: %s\n\n" % orjson.dumps({**fault, "sequence_number": count}),
        ]
    for event in stream:
        pieces = [event[:20], event[20:]] if model == "resp-split" else [event]
        for piece in pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            if model == "resp-split":
                await asyncio.sleep(0.001)  # apart, so that the gateway reads them apart
    await send({"type": "http.response.body", "body": b""})


async def stored(scope: dict[str, Any], authorization: str | None, send: Any, log: dict) -> None:
    """`GET`/`DELETE /v1/responses/{id}` and `GET /v1/responses/{id}/input_items`."""
    method, path = scope["method"], scope["path"]
    query = scope["query_string"].decode()
    log["stored"].append(
        {"method": method, "path": path, "query": query, "authorization": authorization}
    )
    response_id, _, tail = path.removeprefix("/v1/responses/").partition("/")
    kept = STORED.get((authorization, response_id))
    if (method, tail) not in (("GET", ""), ("DELETE", ""), ("GET", "input_items")):
        await _json(send, 404, _error(f"Invalid URL ({method} {path})"))
        return
    if kept is None:
        await _json(send, 404, _error(f"Response with id '{response_id}' not found."))
        return
    response, items = kept
    if method == "DELETE":
        del STORED[authorization, response_id]
        await _json(send, 200, {"id": response_id, "object": "response", "deleted": True})
        return
    if not tail:
        await _json(send, 200, response)
        return
    params = {name: values[-1] for name, values in parse_qs(query).items()}
    limit = int(params.get("limit", 20))
    if not 1 <= limit <= 100:
        await _json(send, 400, _error("limit must be between 1 and 100", "limit"))
        return
    ordered = items if params.get("order", "desc") == "asc" else items[::-1]
    ids = [item["id"] for item in ordered]
    after = params.get("after")
    if after is not None and after not in ids:
        await _json(send, 400, _error(f"No item with id '{after}' in this list.", "after"))
        return
    start = ids.index(after) + 1 if after is not None else 0
    page = ordered[start : start + limit]
    await _json(
        send,
        200,
        {
            "object": "list",
            "data": page,
            "has_more": start + limit < len(ordered),
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        },
    )
