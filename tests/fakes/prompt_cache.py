"""Anthropic's prompt caching, as the fake Anthropic upstream plays it.

Each block marked with `cache_control` caches the request's prefix up to it (tools, then
system, then messages), unless that prefix is under 1,024 tokens (here: its JSON's bytes
/ 4). A request reads the longest marked prefix cached before and writes the rest of its
marked prefixes, each for its mark's `ttl`. The usage it reports is Anthropic's:
`cache_read_input_tokens`, `cache_creation_input_tokens` and their split by lifetime,
with `input_tokens` (the rest) as recorded. Its faults are Anthropic's too: a fifth mark,
or a mark on a message rather than on one of its blocks, is a 400.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

MIN_TOKENS = 1024
CACHED: set[str] = set()  # prefixes cached so far, by digest


def _bare(block: Any) -> Any:
    if isinstance(block, dict):
        return {name: value for name, value in block.items() if name != "cache_control"}
    return block


def _blocks(request: dict[str, Any]) -> list[Any]:
    system = request.get("system")
    blocks = [*(request.get("tools") or [])]
    blocks += system if isinstance(system, list) else [system] if system else []
    for message in request.get("messages") or []:
        content = message.get("content")
        blocks += content if isinstance(content, list) else [content]
    return blocks


def fault(request: dict[str, Any]) -> str | None:
    """Anthropic's error message for the request's marks, if it refuses them."""
    for index, message in enumerate(request.get("messages") or []):
        if "cache_control" in message:
            return f"messages.{index}.cache_control: Extra inputs are not permitted"
    marks = sum(1 for b in _blocks(request) if isinstance(b, dict) and "cache_control" in b)
    if marks > 4:
        return f"A maximum of 4 blocks with cache_control may be provided. Found {marks}."
    return None


def usage(request: dict[str, Any]) -> dict[str, Any] | None:
    """The cache fields of the request's usage; None if it marks nothing."""
    blocks = _blocks(request)
    prefixes: list[tuple[str, int, str]] = []  # digest, tokens, ttl
    for end, block in enumerate(blocks, 1):
        if not (isinstance(block, dict) and "cache_control" in block):
            continue
        raw = orjson.dumps([_bare(b) for b in blocks[:end]])
        if len(raw) // 4 >= MIN_TOKENS:
            ttl = block["cache_control"].get("ttl", "5m")
            prefixes.append((hashlib.sha256(raw).hexdigest(), len(raw) // 4, ttl))
    if not any(isinstance(b, dict) and "cache_control" in b for b in blocks):
        return None
    read = max((tokens for digest, tokens, _ in prefixes if digest in CACHED), default=0)
    written = {"5m": 0, "1h": 0}
    covered = read
    for digest, tokens, ttl in prefixes:
        if tokens > covered:
            written[ttl] += tokens - covered
            covered = tokens
        CACHED.add(digest)
    return {
        "cache_creation_input_tokens": written["5m"] + written["1h"],
        "cache_read_input_tokens": read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": written["5m"],
            "ephemeral_1h_input_tokens": written["1h"],
        },
    }


def with_usage(events: list[bytes], cache: dict[str, Any]) -> list[bytes]:
    """The recorded events, their usage carrying `cache`."""
    result = []
    for event in events:
        name, _, data = event.partition(b"\ndata: ")
        payload = orjson.loads(data) if data else None
        if isinstance(payload, dict) and payload.get("type") == "message_start":
            payload["message"]["usage"].update(cache)
        elif isinstance(payload, dict) and payload.get("type") == "message_delta":
            usage = payload.setdefault("usage", {})
            usage.update({k: v for k, v in cache.items() if k in usage})
        else:
            result.append(event)
            continue
        result.append(name + b"\ndata: " + orjson.dumps(payload) + b"\n\n")
    return result
