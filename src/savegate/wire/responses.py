"""The Responses API in terms of chat completions: requests, answers and items.

Every backend is served through this translation, so `previous_response_id` works the
same whatever answers, and the conversation is stored by the gateway.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

from savegate.core.errors import InvalidRequest

log = logging.getLogger(__name__)

# A namespaced function's name in chat: OpenAI, Anthropic and Gemini all allow only
# [A-Za-z0-9_-] in tool names, so the namespace is joined with an underscore pair.
NAMESPACE_JOIN = "__"
Names = Mapping[str, tuple[str, str]]  # chat tool name → (namespace, name)
_noted: set[str] = set()  # tool types already logged as dropped


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A validated request's `input` as a list of items (a bare string is one user message)."""
    value = body["input"]
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value)


def _text(parts: Any) -> str:
    """The text of content parts; whatever is not text counts for nothing (a stored
    conversation may predate validation)."""
    if not isinstance(parts, list):
        return ""
    return "".join(
        text
        for part in parts
        if isinstance(part, dict) and isinstance(text := part.get("text"), str)
    )


def _parts(content: str | list[dict[str, Any]], role: str) -> Any:
    if isinstance(content, str):
        return content
    if role == "assistant":
        return _text(content)
    parts: list[dict[str, Any]] = []
    for part in content:
        if part["type"] == "input_image":
            image = {"url": part["image_url"], "detail": part.get("detail") or "auto"}
            parts.append({"type": "image_url", "image_url": image})
        else:
            parts.append({"type": "text", "text": part.get("text", "")})
    return parts


def _messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input items as chat messages. A turn's own input is validated (`validate_responses`);
    a stored one may predate that, hence the defaults, and the chat request made of them
    is validated again."""
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = item["role"]
            messages.append({"role": role, "content": _parts(item["content"], role)})
        elif kind == "function_call":
            name = item.get("name")
            if item.get("namespace"):
                name = f"{item['namespace']}{NAMESPACE_JOIN}{name}"
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": name, "arguments": item.get("arguments", "")},
            }
            last = messages[-1] if messages else None
            if last and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            elif last and last["role"] == "assistant" and not last.get("tool_calls"):
                last["tool_calls"] = [call]
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id"),
                    "content": output if isinstance(output, str) else _text(output),
                }
            )
    return messages


def _function(tool: dict[str, Any], name: str, prefix: str | None = None) -> dict[str, Any]:
    function = {
        key: tool[key]
        for key in ("description", "parameters", "strict")
        if tool.get(key) is not None
    }
    if prefix:  # the namespace's description is all the model is told of the group
        function["description"] = f"{prefix}\n\n{function.get('description', '')}".strip()
    return {"type": "function", "function": {"name": name, **function}}


def _note_dropped(kind: str) -> None:
    if kind not in _noted:
        _noted.add(kind)
        log.warning(
            "Responses tools of type '%s' are dropped: a chat backend cannot run them"
            " (noted once).",
            kind,
        )


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Function tools as they are, namespaces flattened into their functions; hosted
    tools (web_search, file_search, mcp, …) are the upstream's to run, and a chat
    backend has none: they are dropped."""
    result = []
    for tool in tools:
        if not isinstance(tool, dict):
            raise InvalidRequest("Each tool must be an object.", param="tools")
        kind = tool.get("type")
        if kind == "function":
            result.append(_function(tool, tool.get("name", "")))
        elif kind == "namespace":
            for inner in tool.get("tools") or []:
                if inner.get("type") != "function":
                    _note_dropped(f"namespace.{inner.get('type')}")
                    continue
                name = f"{tool.get('name')}{NAMESPACE_JOIN}{inner.get('name')}"
                result.append(_function(inner, name, tool.get("description")))
        else:
            _note_dropped(str(kind))
    return result


def tool_names(body: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The request's namespaced functions by their chat names, to name calls back."""
    names: dict[str, tuple[str, str]] = {}
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("type") == "namespace":
            for inner in tool.get("tools") or []:
                namespace, name = str(tool.get("name")), str(inner.get("name"))
                names[f"{namespace}{NAMESPACE_JOIN}{name}"] = (namespace, name)
    return names


def _tool_choice(choice: Any) -> Any:
    """The chat `tool_choice`, or None when it names a tool chat cannot call."""
    if not isinstance(choice, dict):
        return choice
    kind = choice.get("type")
    if kind == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if kind == "allowed_tools":
        return choice.get("mode", "auto")
    return None  # a hosted tool, dropped with its tool


def chat_body(body: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """A Responses request, with its whole conversation `items`, as a chat request."""
    messages = _messages(items)
    if body.get("instructions"):
        messages.insert(0, {"role": "system", "content": body["instructions"]})
    if not messages:
        raise InvalidRequest("'input' must not be empty.", param="input")
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("max_tokens", "max_output_tokens"),
        ("parallel_tool_calls", "parallel_tool_calls"),
        ("user", "user"),
    ):
        if body.get(theirs) is not None:
            chat[ours] = body[theirs]
    tools = _tools(body.get("tools") or [])
    if tools:  # not an empty list: some backends refuse one
        chat["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"))
        if choice is not None:
            chat["tool_choice"] = choice
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_schema":
        chat["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                key: fmt[key] for key in ("name", "schema", "strict", "description") if key in fmt
            },
        }
    elif fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def usage(chat_usage: dict[str, Any] | None) -> dict[str, Any]:
    chat_usage = chat_usage or {}
    prompt = chat_usage.get("prompt_tokens") or 0
    completion = chat_usage.get("completion_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": (chat_usage.get("prompt_tokens_details") or {}).get("cached_tokens")
            or 0
        },
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": (chat_usage.get("completion_tokens_details") or {}).get(
                "reasoning_tokens"
            )
            or 0
        },
        "total_tokens": prompt + completion,
    }


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = (
        [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    )
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def call_item(
    item_id: str,
    call_id: str,
    name: str,
    arguments: str,
    names: Names,
    status: str = "completed",
) -> dict[str, Any]:
    """A `function_call` item for the chat tool `name`, back in the namespace the
    client declared it in."""
    item = {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }
    if name in names:
        item["namespace"], item["name"] = names[name]
    return item


def output_items(chat: dict[str, Any], names: Names) -> tuple[list[dict[str, Any]], str | None]:
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    items: list[dict[str, Any]] = []
    if message.get("content"):
        items.append(message_item(new_id("msg"), message["content"]))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        items.append(
            call_item(
                new_id("fc"),
                call.get("id") or new_id("call"),
                function.get("name", ""),
                function.get("arguments", ""),
                names,
            )
        )
    return items, choice.get("finish_reason")


def incomplete_reason(finish_reason: str | None) -> str | None:
    return {"length": "max_output_tokens", "content_filter": "content_filter"}.get(
        finish_reason or ""
    )


def response_object(
    response_id: str,
    body: dict[str, Any],
    *,
    model: str,
    output: list[dict[str, Any]],
    status: str,
    usage_: dict[str, Any] | None,
    created_at: int | None = None,
    incomplete: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at if created_at is not None else int(time.time()),
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage_,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def from_chat(response_id: str, body: dict[str, Any], chat: dict[str, Any]) -> dict[str, Any]:
    items, finish = output_items(chat, tool_names(body))
    incomplete = incomplete_reason(finish)
    return response_object(
        response_id,
        body,
        model=chat.get("model", ""),
        output=items,
        status="incomplete" if incomplete else "completed",
        usage_=usage(chat.get("usage")),
        incomplete=incomplete,
    )
