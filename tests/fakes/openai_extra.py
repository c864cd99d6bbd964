"""Legacy completions and embeddings for the fake OpenAI upstream, in OpenAI's documented
shapes (the legacy stream is the text-basic recording re-dressed as `text_completion`)."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson


def embedding(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector per text."""
    values = [((hash((text, i)) % 2000) - 1000) / 1000 for i in range(dimensions)]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [v / norm for v in values]


def embeddings_body(request: dict[str, Any]) -> dict[str, Any]:
    inputs = request["input"] if isinstance(request["input"], list) else [request["input"]]
    dimensions = request.get("dimensions") or 8
    data = []
    for index, text in enumerate(inputs):
        vector: Any = embedding(str(text), dimensions)
        if request.get("encoding_format") == "base64":
            vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(len(str(text).split()) for text in inputs)
    return {
        "object": "list",
        "data": data,
        "model": request["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def legacy_events(chat_events: list[bytes], include_usage: bool) -> list[bytes]:
    out = []
    for event in chat_events:
        payload = event.removeprefix(b"data: ").strip()
        if payload == b"[DONE]":
            out.append(event)
            continue
        chunk = orjson.loads(payload)
        legacy = {
            "id": chunk["id"].replace("chatcmpl-", "cmpl-"),
            "object": "text_completion",
            "created": chunk["created"],
            "model": chunk["model"],
            "choices": [
                {
                    "text": c["delta"].get("content") or "",
                    "index": c["index"],
                    "logprobs": None,
                    "finish_reason": c["finish_reason"],
                }
                for c in chunk["choices"]
            ],
        }
        if chunk.get("usage"):
            if not include_usage:
                continue
            legacy["usage"] = chunk["usage"]
        out.append(b"data: " + orjson.dumps(legacy) + b"\n\n")
    return out


def legacy_completion(chat: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": chat["id"].replace("chatcmpl-", "cmpl-"),
        "object": "text_completion",
        "created": chat["created"],
        "model": chat["model"],
        "choices": [
            {
                "text": c["message"]["content"],
                "index": c["index"],
                "logprobs": None,
                "finish_reason": c["finish_reason"],
            }
            for c in chat["choices"]
        ],
        "usage": chat["usage"],
    }


def call_first_tool(events: list[bytes], request: dict[str, Any]) -> list[bytes]:
    """The tool-call recording, calling the request's first tool by its name: a test
    sees the name the gateway sent upstream come back."""
    name = request["tools"][0]["function"]["name"]
    return [
        event.replace(b'"name":"GetWeatherArgs"', orjson.dumps({"name": name})[1:-1])
        for event in events
    ]


def with_cached_tokens(events: list[bytes], model: str) -> list[bytes]:
    """`<fixture>@cached-<n>`: the recording, its usage reporting n prompt tokens read from
    OpenAI's prompt cache."""
    cached = int(model.rpartition("@cached-")[2])
    result = []
    for event in events:
        if event.startswith(b"data: {") and b'"usage":{' in event:
            chunk = orjson.loads(event[len(b"data: ") :])
            chunk["usage"]["prompt_tokens_details"] = {"cached_tokens": cached}
            event = b"data: " + orjson.dumps(chunk) + b"\n\n"
        result.append(event)
    return result
