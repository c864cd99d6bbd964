"""Validation of chat completion requests, with OpenAI's messages, params and codes.

Only what the gateway itself must rely on is checked; every other field passes through
to the provider untouched.
"""

from __future__ import annotations

from typing import Any

import orjson

from savegate.core.errors import InvalidRequest

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_NUMBER = (int, float)


def _invalid_type(param: str, expected: str, value: Any) -> InvalidRequest:
    got = type(value).__name__ if value is not None else "null"
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {got} instead.",
        param=param,
        code="invalid_type",
    )


def _invalid_value(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid value for '{param}': {message}", param=param, code="invalid_value"
    )


def _missing(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise InvalidRequest(
            "We could not parse the JSON body of your request: the body is empty. "
            "The OpenAI API expects a JSON payload."
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request ({exc}). "
            "The OpenAI API expects a JSON payload."
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        raise _invalid_type(name, "a number", value)
    if not low <= value <= high:
        raise InvalidRequest(
            f"Invalid '{name}': {value} is not between {low:g} and {high:g}.",
            param=name,
            code="invalid_value",
        )


def _integer(body: dict[str, Any], name: str, low: int, high: int | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid_type(name, "an integer", value)
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise InvalidRequest(
            f"Invalid '{name}': {value} must be {bound}.", param=name, code="invalid_value"
        )


def _stream(body: dict[str, Any]) -> None:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid_type("stream", "a boolean", stream)
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise InvalidRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
                code="invalid_value",
            )
        if not isinstance(options, dict):
            raise _invalid_type("stream_options", "an object", options)


def _message(index: int, message: Any) -> None:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise _invalid_type(where, "an object", message)
    role = message.get("role")
    if role is None:
        raise _missing(f"{where}.role")
    if role not in ROLES:
        raise _invalid_value(
            f"{where}.role",
            f"'{role}'. Supported values are: {', '.join(repr(r) for r in ROLES)}.",
        )
    content = message.get("content")
    if content is None:
        if (
            role == "assistant" and (message.get("tool_calls") or message.get("function_call"))
        ) or (role == "assistant" and "content" in message):
            pass
        else:
            raise _missing(f"{where}.content")
    elif isinstance(content, list):
        for part_index, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise _invalid_type(f"{where}.content[{part_index}]", "a content part object", part)
    elif not isinstance(content, str):
        raise _invalid_type(f"{where}.content", "a string or an array of content parts", content)
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise _missing(f"{where}.tool_call_id")
    if role == "function" and not isinstance(message.get("name"), str):
        raise _missing(f"{where}.name")


def _tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _invalid_type("tools", "an array", tools)
        for index, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise _missing(f"tools[{index}].function.name")
    functions = body.get("functions")
    if functions is not None:
        if not isinstance(functions, list):
            raise _invalid_type("functions", "an array", functions)
        for index, function in enumerate(functions):
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise _missing(f"functions[{index}].name")
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice not in ("none", "auto", "required"):
        raise _invalid_value("tool_choice", f"'{choice}'. Expected 'none', 'auto' or 'required'.")
    if choice is not None and choice != "none" and not tools:
        raise InvalidRequest(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
            "are specified.",
            param="tool_choice",
            code="invalid_value",
        )


def validate_chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """Check a parsed `/v1/chat/completions` body; raise InvalidRequest on the first fault."""
    _model(body)
    messages = body.get("messages")
    if messages is None:
        raise _missing("messages")
    if not isinstance(messages, list):
        raise _invalid_type("messages", "an array", messages)
    if not messages:
        raise InvalidRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for index, message in enumerate(messages):
        _message(index, message)
    _stream(body)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    _integer(body, "n", 1, 128)
    _integer(body, "max_tokens", 1)
    _integer(body, "max_completion_tokens", 1)
    _integer(body, "seed", -(2**63), 2**63 - 1)
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, list):
            if len(stop) > 4 or not all(isinstance(item, str) for item in stop):
                raise _invalid_value("stop", "expected a string or an array of up to 4 strings.")
        elif not isinstance(stop, str):
            raise _invalid_type("stop", "a string or an array of strings", stop)
    _tools(body)
    return body


def _model(body: dict[str, Any]) -> None:
    model = body.get("model")
    if model is None or model == "":
        raise InvalidRequest("you must provide a model parameter", param="model")
    if not isinstance(model, str):
        raise _invalid_type("model", "a string", model)


def _string_or_list(body: dict[str, Any], name: str, allow_tokens: bool) -> None:
    value = body.get(name)
    if value is None:
        raise _missing(name)
    if isinstance(value, str):
        return
    if not isinstance(value, list) or not value:
        raise _invalid_type(name, "a string or a non-empty array", value)
    for item in value:
        ok = isinstance(item, str) or (
            allow_tokens
            and (
                (isinstance(item, int) and not isinstance(item, bool))
                or (isinstance(item, list) and all(isinstance(t, int) for t in item))
            )
        )
        if not ok:
            raise _invalid_type(name, "strings or arrays of token ids", item)


def validate_completion_request(body: dict[str, Any]) -> dict[str, Any]:
    """Check a parsed `/v1/completions` body."""
    _model(body)
    _string_or_list(body, "prompt", allow_tokens=True)
    _stream(body)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _integer(body, "n", 1, 128)
    _integer(body, "max_tokens", 1)
    return body


def validate_embedding_request(body: dict[str, Any]) -> dict[str, Any]:
    """Check a parsed `/v1/embeddings` body."""
    _model(body)
    _string_or_list(body, "input", allow_tokens=True)
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise _invalid_value("encoding_format", f"'{fmt}'. Expected 'float' or 'base64'.")
    _integer(body, "dimensions", 1)
    return body
