"""The Anthropic half of the fake upstream: replays recorded Messages streams byte for byte.

Models: `<fixture>` (a file of tests/fixtures/anthropic-streams/), `status-<code>` (an
Anthropic error body), `overloaded-mid` (a stream that fails with an `error` event). A
request with `cache_control` marks is answered as Anthropic's prompt cache would (see
`prompt_cache`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.fakes import prompt_cache
from tests.fakes.recordings import sse_events

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "anthropic-streams"
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def fixture_events(name: str) -> list[bytes]:
    return sse_events(FIXTURES / f"{name}.sse")


def payloads(events: list[bytes]) -> list[dict[str, Any]]:
    result = []
    for event in events:
        for line in event.split(b"\n"):
            if line.startswith(b"data: "):
                result.append(orjson.loads(line[6:]))
    return result


def assemble(events: list[bytes]) -> dict[str, Any]:
    """Fold a recorded stream into the non-streaming Message it stands for."""
    message: dict[str, Any] = {}
    partial: dict[int, str] = {}
    for payload in payloads(events):
        kind = payload["type"]
        if kind == "message_start":
            message = dict(payload["message"])
            message["content"] = []
        elif kind == "content_block_start":
            message["content"].append(dict(payload["content_block"]))
        elif kind == "content_block_delta":
            block = message["content"][payload["index"]]
            delta = payload["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "input_json_delta":
                partial[payload["index"]] = (
                    partial.get(payload["index"], "") + delta["partial_json"]
                )
        elif kind == "message_delta":
            message.update(payload["delta"])
            message["usage"].update(payload.get("usage") or {})
    for index, text in partial.items():
        message["content"][index]["input"] = orjson.loads(text) if text else {}
    return message


async def handle(request: dict[str, Any], send: Any) -> None:
    model: str = request["model"]
    refused = prompt_cache.fault(request)
    if model.startswith("status-") or refused:
        status = 400 if refused else int(model.removeprefix("status-"))
        body = {
            "type": "error",
            "error": {
                "type": ERROR_TYPES.get(status, "api_error"),
                "message": refused or f"fake anthropic says {status}",
            },
        }
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": orjson.dumps(body)})
        return
    name = "basic_response" if model == "overloaded-mid" else model
    events = fixture_events(name)
    cache = prompt_cache.usage(request)
    if cache is not None:
        events = prompt_cache.with_usage(events, cache)
    if not request.get("stream"):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": orjson.dumps(assemble(events))})
        return
    if model == "overloaded-mid":
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        events = [*events[:3], b"event: error\ndata: " + orjson.dumps(error) + b"\n\n"]
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
        }
    )
    for event in events:
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
