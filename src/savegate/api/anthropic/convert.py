"""Anthropic Messages requests → our neutral (OpenAI chat) requests, and OpenAI answers
→ Anthropic Messages responses. Pure functions."""

from __future__ import annotations

from typing import Any

import orjson

from savegate.wire.content import text_of

FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _keep_mark(part: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    """`part` with the prompt-caching breakpoint of the block it came from, which the
    Anthropic provider puts back (and others drop)."""
    if "cache_control" in block:
        part["cache_control"] = block["cache_control"]
    return part


def _image_part(source: dict[str, Any]) -> dict[str, Any]:
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    else:
        url = source.get("url", "")
    return {"type": "image_url", "image_url": {"url": url}}


def _user_messages(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in content:
        kind = block["type"]
        if kind == "tool_result":
            message = {
                "role": "tool",
                "tool_call_id": block.get("tool_use_id", ""),
                "content": text_of(block.get("content")) or "",
            }
            tool_messages.append(_keep_mark(message, block))
        elif kind == "text":
            parts.append(_keep_mark({"type": "text", "text": block["text"]}, block))
        else:  # an image: `validate` lets no other type through
            parts.append(_keep_mark(_image_part(block["source"]), block))
    if parts:
        tool_messages.append({"role": "user", "content": parts})
    return tool_messages


def _assistant_message(content: Any) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    calls = [
        {
            "id": block.get("id"),
            "type": "function",
            "function": {
                "name": block.get("name"),
                "arguments": orjson.dumps(block.get("input") or {}).decode(),
            },
        }
        for block in content or []
        if block.get("type") == "tool_use"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text_of(content) or None}
    if calls:
        message["tool_calls"] = calls
    marks = [block for block in content or [] if "cache_control" in block]
    return _keep_mark(message, marks[-1]) if marks else message


def _tool_choice(choice: dict[str, Any]) -> tuple[Any, bool | None]:
    kind = choice.get("type")
    parallel = False if choice.get("disable_parallel_tool_use") else None
    if kind == "any":
        return "required", parallel
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}, parallel
    return kind, parallel


def to_openai(body: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic request checked by `validate` as an OpenAI chat request."""
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, list) and any("cache_control" in block for block in system):
        parts = [_keep_mark({"type": "text", "text": b["text"]}, b) for b in system]
        messages.append({"role": "system", "content": parts})
    elif system:
        messages.append({"role": "system", "content": text_of(system)})
    for message in body["messages"]:
        if message["role"] == "user":
            messages.extend(_user_messages(message.get("content")))
        else:
            messages.append(_assistant_message(message.get("content")))
    request: dict[str, Any] = {
        "model": body["model"],
        "messages": messages,
        "max_tokens": body["max_tokens"],
    }
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p")):
        if body.get(theirs) is not None:
            request[ours] = body[theirs]
    if body.get("stop_sequences"):
        request["stop"] = body["stop_sequences"]
    if body.get("tools"):
        request["tools"] = [
            _keep_mark(
                {
                    "type": "function",
                    "function": {
                        "name": tool["name"],
                        "description": tool.get("description", ""),
                        "parameters": tool.get("input_schema") or {"type": "object"},
                    },
                },
                tool,
            )
            for tool in body["tools"]
        ]
    if isinstance(body.get("tool_choice"), dict) and body.get("tools"):
        choice, parallel = _tool_choice(body["tool_choice"])
        request["tool_choice"] = choice
        if parallel is not None:
            request["parallel_tool_calls"] = parallel
    user = (body.get("metadata") or {}).get("user_id")
    if user:
        request["user"] = user
    if body.get("stream"):
        # Anthropic streams always report usage, so ask the backend for it.
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    return request


def usage_of(usage: dict[str, Any] | None) -> dict[str, Any]:
    """OpenAI's usage in Anthropic's shape, where input excludes cache reads and writes."""
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") or 0
    written = details.get("cache_creation_tokens") or 0
    result: dict[str, Any] = {
        "input_tokens": max(0, (usage.get("prompt_tokens") or 0) - cached - written),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "output_tokens": usage.get("completion_tokens") or 0,
    }
    if isinstance(details.get("cache_creation"), dict):
        result["cache_creation"] = details["cache_creation"]
    return result


def message_id(completion_id: str) -> str:
    return "msg_" + completion_id.removeprefix("chatcmpl-")


def tool_input(arguments: str) -> Any:
    try:
        return orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {}


def from_openai(completion: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI `chat.completion` as an Anthropic Message."""
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("reasoning_content"):
        content.append(
            {"type": "thinking", "thinking": message["reasoning_content"], "signature": ""}
        )
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    calls = list(message.get("tool_calls") or [])
    if message.get("function_call"):
        calls.append(
            {
                "id": "toolu_" + message_id(completion.get("id", "")),
                "function": message["function_call"],
            }
        )
    for call in calls:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": tool_input(function.get("arguments", "")),
            }
        )
    return {
        "id": message_id(completion.get("id", "")),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model", ""),
        "content": content,
        "stop_reason": FINISH_TO_STOP.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": usage_of(completion.get("usage")),
    }
