"""Anthropic's prompt caching, as the fake Anthropic upstream plays it.

Each block marked with `cache_control` caches the request's prefix up to it (tools, then
system, then messages), unless that prefix is under 1,024 tokens (here: its JSON's bytes
/ 4; a string content counts as its text block). A request reads the longest prefix
cached before that ends at one of its marks or at one of the 20 blocks before a mark,
and writes the rest of its marked prefixes, each for its mark's `ttl`. The usage it
reports is Anthropic's: `cache_read_input_tokens`, `cache_creation_input_tokens` and their
split by lifetime, with `input_tokens` (the rest) as recorded. Its faults are Anthropic's
too: a fifth mark, or a mark on a message rather than on one of its blocks, is a 400.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

MIN_TOKENS = 1024
LOOKBACK = 20  # blocks before a mark at whose ends a cached prefix is looked for
CACHED: set[str] = set()  # prefixes cached so far, by digest


def _bare(block: Any) -> Any:
    if isinstance(block, dict):
        return {name: value for name, value in block.items() if name != "cache_control"}
    return block


def _blocks(request: dict[str, Any]) -> list[Any]:
    """The request's blocks in prefix order, a string content (or system) as the one text
    block it stands for."""
    system = request.get("system")
    blocks = [*(request.get("tools") or [])]
    blocks += system if isinstance(system, list) else [_text(system)] if system else []
    for message in request.get("messages") or []:
        content = message.get("content")
        blocks += content if isinstance(content, list) else [_text(content)]
    return blocks


def _text(content: Any) -> Any:
    return {"type": "text", "text": content} if isinstance(content, str) else content


def fault(request: dict[str, Any]) -> str | None:
    """Anthropic's error message for the request's marks, if it refuses them."""
    for index, message in enumerate(request.get("messages") or []):
        if "cache_control" in message:
            return f"messages.{index}.cache_control: Extra inputs are not permitted"
    marks = sum(1 for b in _blocks(request) if isinstance(b, dict) and "cache_control" in b)
    if marks > 4:
        return f"A maximum of 4 blocks with cache_control may be provided. Found {marks}."
    return None


def _prefix(blocks: list[Any], end: int) -> tuple[str, int]:
    raw = orjson.dumps([_bare(b) for b in blocks[:end]])
    return hashlib.sha256(raw).hexdigest(), len(raw) // 4


def usage(request: dict[str, Any]) -> dict[str, Any] | None:
    """The cache fields of the request's usage; None if it marks nothing."""
    blocks = _blocks(request)
    marks = [end for end, b in enumerate(blocks, 1) if isinstance(b, dict) and "cache_control" in b]
    if not marks:
        return None
    prefixes: list[tuple[str, int, str]] = []  # digest, tokens, ttl
    read = 0
    for end in marks:
        digest, tokens = _prefix(blocks, end)
        if tokens >= MIN_TOKENS:
            prefixes.append((digest, tokens, blocks[end - 1]["cache_control"].get("ttl", "5m")))
        # Read: the longest prefix cached before, ending at this mark or a block before it.
        for start in range(end, max(0, end - LOOKBACK), -1):
            digest, tokens = _prefix(blocks, start)
            if digest in CACHED:
                read = max(read, tokens)
                break
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
