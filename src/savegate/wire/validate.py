"""Parsing of request bodies, and validation of chat, completion and embedding requests,
with OpenAI's messages, params and codes.

A request is checked whole before anything translates or forwards it: what passes here
has every shape the gateway's translators rely on, so none of them can fail on it.
Fields the gateway does not read pass through to the provider untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from savegate.core.errors import InvalidRequest
from savegate.wire.checks import (
    MAX_DEPTH,
    MAX_EMBEDDING_INPUTS,
    MAX_N,
    MAX_STOP,
    MAX_STRING,
    MAX_TOOLS,
    array,
    boolean,
    integer,
    invalid_type,
    invalid_value,
    is_integer,
    mapping,
    metadata,
    missing,
    non_empty,
    number,
    one_of,
    required_string,
    string,
    too_deep,
)

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# Roles whose turn may be its role and text alone (a tool's names its call, a function's
# its name). A tuple, not a set: a role may be a list or an object, which no set holds.
_TEXT_ROLES = ("system", "developer", "user", "assistant")
_TOOL_CHOICES = ("none", "auto", "required")
# Optional fields checked together: a body with none of a group's skips its checks.
_TOOL_FIELDS = frozenset(
    ("tools", "functions", "tool_choice", "function_call", "parallel_tool_calls")
)
_CHAT_FIELDS = frozenset(("max_completion_tokens", "metadata", "response_format"))


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, nested no deeper than `MAX_DEPTH` (checked once, here:
    deeper values could not be serialised again on the way out)."""
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
    # Nesting needs at least as many brackets as levels: most bodies skip the walk.
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH:
        path = too_deep(body)
        if path is not None:
            raise InvalidRequest(
                f"Invalid '{path}': the request is nested deeper than {MAX_DEPTH} levels.",
                param=path,
                code="nesting_too_deep",
            )
    return body


def model(body: dict[str, Any]) -> None:
    value = body.get("model")
    if value is None or value == "":
        raise InvalidRequest("you must provide a model parameter", param="model")
    if not isinstance(value, str):
        raise invalid_type("model", "a string", value)


def _content_part(part: Any, param: str) -> None:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise invalid_type(param, "a content part object", part)
    kind = part["type"]
    if kind in ("text", "refusal"):
        required_string(part.get(kind), f"{param}.{kind}")
    elif kind == "image_url":
        image = part.get("image_url")
        if isinstance(image, dict):
            required_string(image.get("url"), f"{param}.image_url.url")
            string(image.get("detail"), f"{param}.image_url.detail")
        else:
            required_string(image, f"{param}.image_url")


def content(value: Any, param: str) -> None:
    """A message's content: a string or an array of typed parts."""
    if isinstance(value, list):
        for index, part in enumerate(value):
            _content_part(part, f"{param}[{index}]")
    elif isinstance(value, str):
        string(value, param)
    else:
        raise invalid_type(param, "a string or an array of content parts", value)


def _function_call(value: Any, param: str) -> None:
    call = mapping(value, param)
    required_string(call.get("name"), f"{param}.name")
    required_string(call.get("arguments"), f"{param}.arguments")


def _tool_calls(value: Any, param: str) -> None:
    for index, call in enumerate(array(value, param)):
        where = f"{param}[{index}]"
        mapping(call, where)
        string(call.get("id"), f"{where}.id")
        _function_call(call.get("function"), f"{where}.function")


def _message(index: int, message: Any) -> None:
    # The usual turn, a role and its text, passes at once (no path named, no check
    # called): a request's messages are most of its checks.
    if (
        type(message) is dict
        and len(message) == 2
        and type(text := message.get("content")) is str
        and message.get("role") in _TEXT_ROLES
        and len(text) <= MAX_STRING
    ):
        return
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise invalid_type(where, "an object", message)
    role = message.get("role")
    if role is None:
        raise missing(f"{where}.role")
    one_of(role, f"{where}.role", ROLES)
    string(message.get("name"), f"{where}.name")
    value = message.get("content")
    if value is not None:
        content(value, f"{where}.content")
    elif role != "assistant" or not (
        "content" in message or message.get("tool_calls") or message.get("function_call")
    ):
        # Only an assistant turn may go without content: explicitly null, or a call.
        raise missing(f"{where}.content")
    if role == "assistant":
        if message.get("tool_calls") is not None:
            _tool_calls(message["tool_calls"], f"{where}.tool_calls")
        if message.get("function_call") is not None:
            _function_call(message["function_call"], f"{where}.function_call")
    if role == "tool":
        required_string(message.get("tool_call_id"), f"{where}.tool_call_id")
    if role == "function":
        required_string(message.get("name"), f"{where}.name")


def _function(value: Any, param: str) -> None:
    function = value if isinstance(value, dict) else {}
    required_string(function.get("name"), f"{param}.name")
    string(function.get("description"), f"{param}.description")
    if function.get("parameters") is not None:
        mapping(function["parameters"], f"{param}.parameters")
    boolean(function.get("strict"), f"{param}.strict")


def _named_choice(choice: Any, param: str, allowed: tuple[str, ...]) -> None:
    """`tool_choice` or legacy `function_call`: one of `allowed`, or an object naming a
    function (as `function.name` or, legacy, `name`)."""
    if isinstance(choice, str):
        one_of(choice, param, allowed)
        return
    choice = mapping(choice, param)
    if "function" in choice:
        required_string(
            mapping(choice["function"], f"{param}.function").get("name"), f"{param}.function.name"
        )
    else:
        string(choice.get("name"), f"{param}.name")
    string(choice.get("type"), f"{param}.type")


def _tools(body: dict[str, Any]) -> None:
    if _TOOL_FIELDS.isdisjoint(body):
        return
    tools = body.get("tools")
    if tools is not None:
        for index, tool in enumerate(array(tools, "tools", MAX_TOOLS)):
            tool = mapping(tool, f"tools[{index}]")
            one_of(tool.get("type", "function"), f"tools[{index}].type", ("function",))
            _function(tool.get("function"), f"tools[{index}].function")
    functions = body.get("functions")
    if functions is not None:
        for index, function in enumerate(array(functions, "functions", MAX_TOOLS)):
            _function(function, f"functions[{index}]")
    choice = body.get("tool_choice")
    if choice is not None:
        _named_choice(choice, "tool_choice", _TOOL_CHOICES)
        if choice != "none" and not tools:
            raise InvalidRequest(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                "are specified.",
                param="tool_choice",
                code="invalid_value",
            )
    if body.get("function_call") is not None:
        _named_choice(body["function_call"], "function_call", ("none", "auto"))
    boolean(body.get("parallel_tool_calls"), "parallel_tool_calls")


def _stream(body: dict[str, Any]) -> None:
    stream = body.get("stream")
    boolean(stream, "stream")
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise InvalidRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
                code="invalid_value",
            )
        boolean(
            mapping(options, "stream_options").get("include_usage"), "stream_options.include_usage"
        )


def _stop(value: Any) -> None:
    if isinstance(value, list):
        if len(value) > MAX_STOP or not all(isinstance(item, str) for item in value):
            raise invalid_value("stop", "expected a string or an array of up to 4 strings.")
    elif value is not None and not isinstance(value, str):
        raise invalid_type("stop", "a string or an array of strings", value)


def _response_format(value: Any) -> None:
    if value is None:
        return
    fmt = mapping(value, "response_format")
    if fmt.get("type") is None:
        raise missing("response_format.type")
    one_of(fmt["type"], "response_format.type", ("text", "json_object", "json_schema"))
    if fmt.get("type") == "json_schema":
        schema = mapping(fmt.get("json_schema"), "response_format.json_schema")
        required_string(schema.get("name"), "response_format.json_schema.name")
        if schema.get("schema") is not None:
            mapping(schema["schema"], "response_format.json_schema.schema")


# The sampling and length parameters chat and legacy completions share, in the order
# they are checked; a body names few of them, and only those are checked.
_SAMPLING: tuple[tuple[str, Callable[[Any], None]], ...] = (
    ("temperature", lambda value: number(value, "temperature", 0, 2)),
    ("top_p", lambda value: number(value, "top_p", 0, 1)),
    ("presence_penalty", lambda value: number(value, "presence_penalty", -2, 2)),
    ("frequency_penalty", lambda value: number(value, "frequency_penalty", -2, 2)),
    ("n", lambda value: integer(value, "n", 1, MAX_N)),
    ("max_tokens", lambda value: integer(value, "max_tokens", 1)),
    ("seed", lambda value: integer(value, "seed", -(2**63), 2**63 - 1)),
    ("stop", _stop),
    ("user", lambda value: string(value, "user")),
)


def _sampling(body: dict[str, Any]) -> None:
    _stream(body)
    for name, check in _SAMPLING:
        if name in body:
            check(body[name])


def validate_chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """Check a parsed `/v1/chat/completions` body; raise InvalidRequest on the first fault."""
    model(body)
    messages = body.get("messages")
    if messages is None:
        raise missing("messages")
    non_empty(array(messages, "messages"), "messages")
    for index, message in enumerate(messages):
        _message(index, message)
    _sampling(body)
    if not _CHAT_FIELDS.isdisjoint(body):
        integer(body.get("max_completion_tokens"), "max_completion_tokens", 1)
        metadata(body.get("metadata"), "metadata")
        _response_format(body.get("response_format"))
    _tools(body)
    return body


def _string_or_list(body: dict[str, Any], name: str, max_items: int | None) -> None:
    """A prompt or embedding input: a string, or an array of strings, of token ids, or
    of arrays of token ids."""
    value = body.get(name)
    if value is None:
        raise missing(name)
    if isinstance(value, str):
        string(value, name)
        return
    items = array(value, name, max_items)
    if not items:
        raise invalid_type(name, "a string or a non-empty array", value)
    for index, item in enumerate(items):
        where = f"{name}[{index}]"
        if isinstance(item, str):
            string(item, where, MAX_STRING)
        elif not is_integer(item) and not (
            isinstance(item, list) and item and all(is_integer(t) for t in item)
        ):
            raise invalid_type(where, "strings or arrays of token ids", item)


def validate_completion_request(body: dict[str, Any]) -> dict[str, Any]:
    """Check a parsed `/v1/completions` body."""
    model(body)
    _string_or_list(body, "prompt", None)
    _sampling(body)
    string(body.get("suffix"), "suffix")
    boolean(body.get("echo"), "echo")
    integer(body.get("best_of"), "best_of", 0, 20)
    integer(body.get("logprobs"), "logprobs", 0, 5)
    return body


def validate_embedding_request(body: dict[str, Any]) -> dict[str, Any]:
    """Check a parsed `/v1/embeddings` body."""
    model(body)
    _string_or_list(body, "input", MAX_EMBEDDING_INPUTS)
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise invalid_value("encoding_format", f"'{fmt}'. Expected 'float' or 'base64'.")
    integer(body.get("dimensions"), "dimensions", 1)
    string(body.get("user"), "user")
    return body
