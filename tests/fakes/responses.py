"""The Responses API for the fake OpenAI upstream (`POST /v1/responses`), in OpenAI's
documented event shapes: a reasoning item with encrypted content, a `web_search_call`
when the request has the hosted tool, then the answer, and usage in `response.completed`.

The model name picks the behaviour: `resp-error-after-<n>` sends n events then an
`error` event; `resp-split` writes every event in two pieces (cut mid-line); anything
else answers normally.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

ANSWER = "Hello from the Responses API."
USAGE = {
    "input_tokens": 21,
    "input_tokens_details": {"cached_tokens": 5},
    "output_tokens": 9,
    "output_tokens_details": {"reasoning_tokens": 4},
    "total_tokens": 30,
}


def _response(request: dict[str, Any], status: str, output: list[dict[str, Any]]) -> dict:
    return {
        "id": "resp_fake_upstream",
        "object": "response",
        "created_at": 1750000000,
        "status": status,
        "model": f"{request['model']}-2025-01-01",
        "output": output,
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


def body(request: dict[str, Any]) -> dict[str, Any]:
    return _response(request, "completed", _items(request))


def events(request: dict[str, Any]) -> list[bytes]:
    payloads: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response(request, "in_progress", [])},
        {"type": "response.in_progress", "response": _response(request, "in_progress", [])},
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
    payloads.append({"type": "response.completed", "response": body(request)})
    return [
        b"event: %s\ndata: %s\n\n"
        % (payload["type"].encode(), orjson.dumps({**payload, "sequence_number": n}))
        for n, payload in enumerate(payloads)
    ]


async def handle(request: dict[str, Any], send: Any) -> None:
    model: str = request["model"]
    if not request.get("stream"):
        raw = orjson.dumps(body(request))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": raw})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
        }
    )
    stream = events(request)
    if model.startswith("resp-error-after-"):
        count = int(model.removeprefix("resp-error-after-"))
        error = {"type": "error", "code": "fake_mid", "message": "fake upstream failed mid-stream"}
        stream = [
            *stream[:count],
            b"event: error\ndata: %s\n\n" % orjson.dumps({**error, "sequence_number": count}),
        ]
    for event in stream:
        pieces = [event[:20], event[20:]] if model == "resp-split" else [event]
        for piece in pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            if model == "resp-split":
                await asyncio.sleep(0.001)  # apart, so that the gateway reads them apart
    await send({"type": "http.response.body", "body": b""})
