"""The Responses API in terms of chat completions: requests, answers and items.

Every backend is served through this translation, so `previous_response_id` works the
same whatever answers, and the conversation is stored by the gateway.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from savegate.core.errors import InvalidRequest


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
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments", "")},
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


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result = []
    for tool in tools:
        if tool.get("type") != "function":
            raise InvalidRequest(
                f"Tools of type '{tool.get('type')}' are not supported; use function tools.",
                param="tools",
            )
        function = {
            key: tool[key]
            for key in ("name", "description", "parameters", "strict")
            if tool.get(key) is not None
        }
        result.append({"type": "function", "function": function})
    return result


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
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") == "function":
            chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif choice is not None:
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
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def output_items(chat: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
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
    items, finish = output_items(chat)
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
