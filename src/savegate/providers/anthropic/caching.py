"""Automatic prompt-caching breakpoints (`prompt_cache: auto`).

Anthropic caches a request's prefix (tools, then system, then messages) up to each block
marked with `cache_control`; at most four marks a request, and a prefix shorter than the
model's minimum (1,024 tokens for most models) is not cached at all. With `auto`, the
gateway marks the end of a long system prompt (caching tools and system together), the
last tool of a long tool list (so the tools stay cached when the system prompt changes)
and, in a conversation (a turn after an assistant's) whose whole prefix is long, the last
turn's last block, as Anthropic documents for multi-turn caching: the next turn reads the
conversation so far from the cache and writes only what it adds. In that order of
preference, within the marks the client left free, and no turn when the client marked
one itself.
"""

from __future__ import annotations

from typing import Any

import orjson

from savegate.core.tokens import estimate_tokens

MAX_BREAKPOINTS = 4
MIN_CACHEABLE_TOKENS = 1024
EPHEMERAL = {"type": "ephemeral"}
# Blocks a mark may go on: not thinking, and a text only if it is not empty.
_MARKABLE = frozenset({"text", "image", "document", "tool_use", "tool_result"})


def _marked(blocks: list[Any]) -> int:
    return sum(1 for block in blocks if isinstance(block, dict) and "cache_control" in block)


def _message_blocks(request: dict[str, Any]) -> list[Any]:
    blocks: list[Any] = []
    for message in request.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list):
            blocks += content
    return blocks


def _markable(message: dict[str, Any]) -> bool:
    content = message.get("content")
    if isinstance(content, str):
        return bool(content)
    last = content[-1] if isinstance(content, list) and content else None
    return (
        isinstance(last, dict)
        and last.get("type") in _MARKABLE
        and (last["type"] != "text" or bool(last.get("text")))
    )


def _mark_turn(request: dict[str, Any], prefix_tokens: int) -> None:
    """Mark the last turn's last block, if the request is a long conversation
    (`prefix_tokens`: those of its tools and system)."""
    messages: list[dict[str, Any]] = request.get("messages") or []
    earlier = messages[:-1]
    if not messages or not any(m.get("role") == "assistant" for m in earlier):
        return
    last = messages[-1]
    if not _markable(last) or prefix_tokens + _tokens(messages) < MIN_CACHEABLE_TOKENS:
        return
    content = last["content"]
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    marked = {**blocks[-1], "cache_control": dict(EPHEMERAL)}
    # New lists and dicts: the client's request is not changed under it.
    request["messages"] = [*earlier, {**last, "content": [*blocks[:-1], marked]}]


def _tokens(value: Any) -> int:
    return estimate_tokens(orjson.dumps(value)) if value else 0


def add_breakpoints(request: dict[str, Any]) -> None:
    """Mark `request` (an Anthropic Messages request, changed in place) for caching."""
    system = request.get("system")
    tools: list[dict[str, Any]] = request.get("tools") or []
    in_messages = _marked(_message_blocks(request))
    free = MAX_BREAKPOINTS - in_messages
    free -= _marked([*tools, *(system if isinstance(system, list) else [])])
    tools_tokens, system_tokens = _tokens(tools), _tokens(system)
    if free > 0 and system and tools_tokens + system_tokens >= MIN_CACHEABLE_TOKENS:
        if isinstance(system, str):
            system = request["system"] = [{"type": "text", "text": system}]
        if "cache_control" not in system[-1]:
            system[-1]["cache_control"] = dict(EPHEMERAL)
            free -= 1
    if free > 0 and tools_tokens >= MIN_CACHEABLE_TOKENS and "cache_control" not in tools[-1]:
        tools[-1]["cache_control"] = dict(EPHEMERAL)
        free -= 1
    if free > 0 and not in_messages:
        _mark_turn(request, tools_tokens + system_tokens)
