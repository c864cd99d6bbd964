"""The Gemini half of the fake upstream: replays `tests/fixtures/gemini/*.sse`.

Models: `<fixture>`, `<fixture>@cached-<n>` (n of its prompt tokens reported as read from
cached content), `status-<code>` (a Google error body), `cut` (a stream that closes
before any finishReason), `finish-<REASON>` (one candidate ending with that finishReason
and no content), `empty` (a response with neither candidates nor promptFeedback);
`*-image` answers `generateContent` with one image (`tests/fixtures/openai-media/
gemini-image.json`), `*-image-blocked` with its prompt blocked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.fakes.media import PNG_B64
from tests.fakes.recordings import sse_events

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gemini"
STATUSES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def fixture_events(name: str) -> list[bytes]:
    return sse_events(FIXTURES / f"{name}.sse")


def finish_event(reason: str) -> bytes:
    candidate = {"content": {}, "finishReason": reason, "index": 0}
    response = {
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "fr1",
    }
    return b"data: " + orjson.dumps(response) + b"\n\n"


EMPTY = b'data: {"usageMetadata": {"promptTokenCount": 12}, "modelVersion": "gemini-2.5-flash"}\n\n'


def with_cached_content(events: list[bytes], cached: int) -> list[bytes]:
    """`events` with `cachedContentTokenCount` in their usage, as Gemini reports reads of a
    cache (implicit or explicit): part of `promptTokenCount`."""
    out = []
    for event in events:
        chunk = orjson.loads(event.removeprefix(b"data: "))
        chunk["usageMetadata"]["cachedContentTokenCount"] = cached
        out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    return out


def events_for(model: str) -> list[bytes]:
    if "@cached-" in model:
        name, _, cached = model.partition("@cached-")
        return with_cached_content(events_for(name), int(cached))
    if model.startswith("finish-"):
        return [finish_event(model.removeprefix("finish-"))]
    if model == "empty":
        return [EMPTY]
    if model == "cut":
        return fixture_events("text")[:1]
    return fixture_events(model)


def assemble(events: list[bytes]) -> dict[str, Any]:
    """Fold a stream into the `generateContent` response it stands for."""
    chunks = [orjson.loads(event.removeprefix(b"data: ")) for event in events]
    last = chunks[-1]
    if not any(chunk.get("candidates") for chunk in chunks):
        return last  # a blocked prompt, or nothing at all
    parts: list[dict[str, Any]] = []
    candidate: dict[str, Any] = {"index": 0}
    for chunk in chunks:
        for item in chunk.get("candidates") or []:
            parts.extend((item.get("content") or {}).get("parts") or [])
            candidate.update({k: v for k, v in item.items() if k != "content"})
    candidate["content"] = {"role": "model", "parts": parts}
    return {
        "candidates": [candidate],
        "usageMetadata": last["usageMetadata"],
        "modelVersion": last["modelVersion"],
        "responseId": last["responseId"],
    }


def image_answer(model: str) -> dict[str, Any]:
    if model.endswith("-blocked"):
        return {"promptFeedback": {"blockReason": "SAFETY"}, "modelVersion": model}
    answer = orjson.loads((FIXTURES.parent / "openai-media" / "gemini-image.json").read_bytes())
    answer["candidates"][0]["content"]["parts"][0]["inlineData"]["data"] = PNG_B64
    return answer


async def handle(path: str, query: bytes, send: Any) -> None:
    model, _, method = path.rsplit("/", 1)[1].partition(":")
    if model.startswith("status-"):
        status = int(model.removeprefix("status-"))
        body = {
            "error": {
                "code": status,
                "message": f"fake gemini says {status}",
                "status": STATUSES.get(status, "UNKNOWN"),
            }
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
    if model.endswith(("-image", "-image-blocked")) and method == "generateContent":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": orjson.dumps(image_answer(model))})
        return
    events = events_for(model)
    if method == "generateContent":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": orjson.dumps(assemble(events))})
        return
    assert method == "streamGenerateContent" and query == b"alt=sse"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    for event in events:
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
