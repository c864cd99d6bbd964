"""Canned upstream answers (OpenAI chunk shape, from a recorded stream) and request bodies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURE = (
    Path(__file__).resolve().parents[1]
    / "tests"
    / "fixtures"
    / "openai-chat-streams"
    / "text-basic.sse"
)
STREAM_CHUNKS = 50  # data events before [DONE]: role, 47 content, finish, usage


def _events(path: Path) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[len("data: ") :]))
    return events


def canned(path: Path = FIXTURE) -> tuple[bytes, bytes]:
    """(chat.completion JSON, 50-chunk SSE stream) built from the recorded stream."""
    events = _events(path)
    role, finish, usage = events[0], events[-2], events[-1]
    texts = [e for e in events[1:-2] if e["choices"] and e["choices"][0]["delta"].get("content")]
    content_count = STREAM_CHUNKS - 3
    body = [texts[i % len(texts)] for i in range(content_count)]
    content = "".join(e["choices"][0]["delta"]["content"] for e in body)
    usage = json.loads(json.dumps(usage))
    usage["usage"].update(
        completion_tokens=content_count,
        total_tokens=usage["usage"]["prompt_tokens"] + content_count,
    )
    stream = [role, *body, finish, usage]
    sse = b"".join(b"data: " + _dumps(e) + b"\n\n" for e in stream) + b"data: [DONE]\n\n"
    completion = {
        "id": role["id"],
        "object": "chat.completion",
        "created": role["created"],
        "model": role["model"],
        "system_fingerprint": role.get("system_fingerprint"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage["usage"],
    }
    return _dumps(completion), sse


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def request_body(model: str, stream: bool) -> bytes:
    """The chat request every target gets (only the model name and `stream` vary)."""
    return _dumps(
        {
            "model": model,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What's the weather like in Paris today?"},
            ],
            "max_tokens": 64,
            "stream": stream,
        }
    )
