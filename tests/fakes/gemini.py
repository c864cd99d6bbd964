"""The Gemini half of the fake upstream: replays `tests/fixtures/gemini/*.sse`.

Models: `<fixture>`, `status-<code>` (a Google error body), `cut` (a stream that closes
before any finishReason)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

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


def assemble(events: list[bytes]) -> dict[str, Any]:
    """Fold a stream into the `generateContent` response it stands for."""
    chunks = [orjson.loads(event.removeprefix(b"data: ")) for event in events]
    parts: list[dict[str, Any]] = []
    candidate: dict[str, Any] = {"index": 0}
    for chunk in chunks:
        for item in chunk.get("candidates") or []:
            parts.extend((item.get("content") or {}).get("parts") or [])
            candidate.update({k: v for k, v in item.items() if k != "content"})
    candidate["content"] = {"role": "model", "parts": parts}
    last = chunks[-1]
    return {
        "candidates": [candidate],
        "usageMetadata": last["usageMetadata"],
        "modelVersion": last["modelVersion"],
        "responseId": last["responseId"],
    }


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
    events = fixture_events("text" if model == "cut" else model)
    if model == "cut":
        events = events[:1]
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
