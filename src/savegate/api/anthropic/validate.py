"""Validation of Anthropic Messages requests, with Anthropic's wording
(`messages.0.content: Input should be a valid list`), before `convert` translates them.

What passes here has every shape `convert.to_openai` relies on.
"""

from __future__ import annotations

from typing import Any

from savegate.core.errors import InvalidRequest
from savegate.wire.checks import MAX_STOP, MAX_STRING, MAX_TOOLS, is_integer

_NUMBER = (int, float)
# Blocks an assistant turn may carry that have no chat equivalent: left out.
_DROPPED = ("thinking", "redacted_thinking")


def _fault(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param)


def _required(value: Any, param: str) -> Any:
    if value is None:
        raise _fault(param, "Field required")
    return value


def _string(value: Any, param: str) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise _fault(param, "Input should be a valid string")
    if len(value) > MAX_STRING:
        raise _fault(param, f"String should have at most {MAX_STRING} characters")


def _object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fault(param, "Input should be a valid dictionary")
    return value


def _list(value: Any, param: str, max_items: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise _fault(param, "Input should be a valid list")
    if max_items is not None and len(value) > max_items:
        raise _fault(param, f"List should have at most {max_items} items")
    return value


def _number(value: Any, param: str, low: float, high: float) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        raise _fault(param, "Input should be a valid number")
    if not low <= value <= high:
        raise _fault(param, f"Input should be between {low:g} and {high:g}")


def _integer(value: Any, param: str, low: int) -> None:
    if value is None:
        return
    if not is_integer(value):
        raise _fault(param, "Input should be a valid integer")
    if value < low:
        raise _fault(param, f"Input should be greater than or equal to {low}")


def _boolean(value: Any, param: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise _fault(param, "Input should be a valid boolean")


def _cache_control(holder: dict[str, Any], param: str) -> None:
    """A prompt-caching breakpoint: `{"type": "ephemeral"}`, with an optional `ttl`."""
    if "cache_control" not in holder:
        return
    where = f"{param}.cache_control"
    mark = _object(holder["cache_control"], where)
    if mark.get("type") != "ephemeral":
        raise _fault(f"{where}.type", "Input should be 'ephemeral'")
    if mark.get("ttl") not in (None, "5m", "1h"):
        raise _fault(f"{where}.ttl", "Input should be '5m' or '1h'")


def _block(block: Any, param: str, allowed: tuple[str, ...]) -> str:
    """A content block's type, once it is one of `allowed`."""
    block = _object(block, param)
    kind = _required(block.get("type"), f"{param}.type")
    _string(kind, f"{param}.type")
    if kind not in allowed:
        raise _fault(f"{param}.type", f"Content blocks of type '{kind}' are not supported")
    _cache_control(block, param)
    return str(kind)


def _text_block(block: dict[str, Any], param: str) -> None:
    _string(_required(block.get("text"), f"{param}.text"), f"{param}.text")


def _image_block(block: dict[str, Any], param: str) -> None:
    source = _object(block.get("source"), f"{param}.source")
    kind = source.get("type")
    if kind == "base64":
        _string(source.get("media_type"), f"{param}.source.media_type")
        _string(_required(source.get("data"), f"{param}.source.data"), f"{param}.source.data")
    elif kind == "url":
        _string(_required(source.get("url"), f"{param}.source.url"), f"{param}.source.url")
    else:
        raise _fault(f"{param}.source.type", "Input should be 'base64' or 'url'")


def _blocks(value: Any, param: str, allowed: tuple[str, ...]) -> None:
    """Plain text or blocks of the `allowed` types; of these, text and images are checked."""
    if isinstance(value, str):
        _string(value, param)
        return
    for index, block in enumerate(_list(value, param)):
        where = f"{param}.{index}"
        kind = _block(block, where, allowed)
        if kind == "text":
            _text_block(block, where)
        elif kind == "image":
            _image_block(block, where)


def _user_content(value: Any, param: str) -> None:
    _blocks(value, param, ("text", "image", "tool_result"))
    for index, block in enumerate(value if isinstance(value, list) else []):
        if block["type"] == "tool_result":
            where = f"{param}.{index}"
            _string(
                _required(block.get("tool_use_id"), f"{where}.tool_use_id"), f"{where}.tool_use_id"
            )
            if block.get("content") is not None:
                _blocks(block["content"], f"{where}.content", ("text", "image"))
            _boolean(block.get("is_error"), f"{where}.is_error")


def _assistant_content(value: Any, param: str) -> None:
    _blocks(value, param, ("text", "tool_use", *_DROPPED))
    for index, block in enumerate(value if isinstance(value, list) else []):
        if block["type"] == "tool_use":
            where = f"{param}.{index}"
            for name in ("id", "name"):
                _string(_required(block.get(name), f"{where}.{name}"), f"{where}.{name}")
            _object(_required(block.get("input"), f"{where}.input"), f"{where}.input")


def _messages(value: Any) -> None:
    for index, message in enumerate(_list(_required(value, "messages"), "messages")):
        where = f"messages.{index}"
        message = _object(message, where)
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise _fault(f"{where}.role", "Input should be 'user' or 'assistant'")
        content = _required(message.get("content"), f"{where}.content")
        if role == "user":
            if content == []:  # a user turn of nothing has no chat equivalent
                raise _fault(f"{where}.content", "List should have at least 1 item")
            _user_content(content, f"{where}.content")
        else:
            _assistant_content(content, f"{where}.content")


def _tools(value: Any) -> None:
    if value is None:
        return
    for index, tool in enumerate(_list(value, "tools", MAX_TOOLS)):
        where = f"tools.{index}"
        tool = _object(tool, where)
        _string(_required(tool.get("name"), f"{where}.name"), f"{where}.name")
        _string(tool.get("description"), f"{where}.description")
        if tool.get("input_schema") is not None:
            _object(tool["input_schema"], f"{where}.input_schema")
        _cache_control(tool, where)


def _tool_choice(value: Any) -> None:
    if value is None:
        return
    choice = _object(value, "tool_choice")
    kind = choice.get("type")
    if kind not in ("auto", "any", "tool", "none"):
        raise _fault("tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")
    if kind == "tool":
        _string(_required(choice.get("name"), "tool_choice.name"), "tool_choice.name")
    _boolean(choice.get("disable_parallel_tool_use"), "tool_choice.disable_parallel_tool_use")


def validate_messages_request(body: dict[str, Any]) -> dict[str, Any]:
    """Check a parsed Messages (or count_tokens) body; raise InvalidRequest on the first
    fault."""
    _string(_required(body.get("model"), "model"), "model")
    _messages(body.get("messages"))
    system = body.get("system")
    if system is not None:
        _blocks(system, "system", ("text",))
    _number(body.get("temperature"), "temperature", 0, 1)
    _number(body.get("top_p"), "top_p", 0, 1)
    _integer(body.get("top_k"), "top_k", 0)
    stop = body.get("stop_sequences")
    if stop is not None:
        # Every model is served through chat, whose `stop` takes at most 4.
        for index, sequence in enumerate(_list(stop, "stop_sequences", MAX_STOP)):
            _string(_required(sequence, f"stop_sequences.{index}"), f"stop_sequences.{index}")
    _boolean(body.get("stream"), "stream")
    _tools(body.get("tools"))
    _tool_choice(body.get("tool_choice"))
    if body.get("metadata") is not None:
        _string(_object(body["metadata"], "metadata").get("user_id"), "metadata.user_id")
    return body


def validate_create_request(body: dict[str, Any]) -> dict[str, Any]:
    """Check a `POST /v1/messages` body: a request that asks for an answer."""
    validate_messages_request(body)
    _integer(_required(body.get("max_tokens"), "max_tokens"), "max_tokens", 1)
    if not body["messages"]:
        raise _fault("messages", "at least one message is required")
    return body
