"""Automatic prompt-caching breakpoints (`prompt_cache: auto`).

Anthropic caches a request's prefix (tools, then system, then messages) up to each block
marked with `cache_control`; at most four marks a request, and a prefix shorter than the
model's minimum (1,024 tokens for most models) is not cached at all. With `auto`, the
gateway marks the end of a long system prompt (caching tools and system together) and
the last tool of a long tool list (so the tools stay cached when the system prompt
changes), in that order of preference, within the marks the client left free.
"""

from __future__ import annotations

from typing import Any

import orjson

from savegate.core.tokens import estimate_tokens

MAX_BREAKPOINTS = 4
MIN_CACHEABLE_TOKENS = 1024
EPHEMERAL = {"type": "ephemeral"}


def _marks(request: dict[str, Any]) -> int:
    system = request.get("system")
    blocks = [*(request.get("tools") or []), *(system if isinstance(system, list) else [])]
    for message in request.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list):
            blocks += content
    return sum(1 for block in blocks if isinstance(block, dict) and "cache_control" in block)


def _tokens(value: Any) -> int:
    return estimate_tokens(orjson.dumps(value)) if value else 0


def add_breakpoints(request: dict[str, Any]) -> None:
    """Mark `request` (an Anthropic Messages request, changed in place) for caching."""
    free = MAX_BREAKPOINTS - _marks(request)
    tools: list[dict[str, Any]] = request.get("tools") or []
    system = request.get("system")
    tools_tokens = _tokens(tools)
    if free > 0 and system and tools_tokens + _tokens(system) >= MIN_CACHEABLE_TOKENS:
        if isinstance(system, str):
            system = request["system"] = [{"type": "text", "text": system}]
        if "cache_control" not in system[-1]:
            system[-1]["cache_control"] = dict(EPHEMERAL)
            free -= 1
    if free > 0 and tools_tokens >= MIN_CACHEABLE_TOKENS and "cache_control" not in tools[-1]:
        tools[-1]["cache_control"] = dict(EPHEMERAL)
