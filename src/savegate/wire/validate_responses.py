"""Validation of `/v1/responses` requests, before they are translated to chat.

What passes here has every shape `wire.responses` relies on, and is answered in the
Responses shape with the request's own fields echoed, so those are checked too.
"""

from __future__ import annotations

from typing import Any

from savegate.core.errors import InvalidRequest
from savegate.wire.checks import (
    MAX_TOOLS,
    array,
    boolean,
    integer,
    invalid_type,
    mapping,
    metadata,
    missing,
    number,
    one_of,
    required_string,
    string,
)
from savegate.wire.validate import model

ROLES = ("user", "system", "developer", "assistant")
TEXT_PARTS = ("input_text", "output_text", "text")
# The output parts an assistant turn of the conversation may carry.
ASSISTANT_PARTS = ("output_text", "refusal")
_DETAILS = ("low", "high", "auto")
_TOOL_CHOICES = ("none", "auto", "required")


def _unsupported(param: str, what: str, kind: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid value for '{param}': {what} of type '{kind}' are not supported.",
        param=param,
        code="invalid_value",
    )


def _part(part: Any, param: str, assistant: bool) -> None:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise invalid_type(param, "a content part object", part)
    kind = part["type"]
    if kind in TEXT_PARTS or (assistant and kind == "refusal"):
        field = "refusal" if kind == "refusal" else "text"
        required_string(part.get(field), f"{param}.{field}")
    elif kind == "input_image" and not assistant:
        required_string(part.get("image_url"), f"{param}.image_url")
        one_of(part.get("detail"), f"{param}.detail", _DETAILS)
    else:
        raise _unsupported(f"{param}.type", "input content parts", kind)


def _parts(value: Any, param: str, assistant: bool = False) -> None:
    """A string, or an array of content parts."""
    if value is None:
        raise missing(param)
    if isinstance(value, str):
        string(value, param)
        return
    if not isinstance(value, list):
        raise invalid_type(param, "a string or an array of content parts", value)
    for index, part in enumerate(value):
        _part(part, f"{param}[{index}]", assistant)


def _item(item: Any, param: str) -> None:
    item = mapping(item, param)
    kind = item.get("type", "message")
    string(item.get("id"), f"{param}.id")
    if kind == "message":
        role = item.get("role")
        if role is None:
            raise missing(f"{param}.role")
        one_of(role, f"{param}.role", ROLES)
        _parts(item.get("content"), f"{param}.content", assistant=role == "assistant")
    elif kind == "function_call":
        required_string(item.get("call_id"), f"{param}.call_id")
        required_string(item.get("name"), f"{param}.name")
        required_string(item.get("arguments"), f"{param}.arguments")
    elif kind == "function_call_output":
        required_string(item.get("call_id"), f"{param}.call_id")
        _parts(item.get("output"), f"{param}.output")
    elif kind != "reasoning":  # reasoning items are accepted and left out of the chat
        string(kind, f"{param}.type")
        raise _unsupported(f"{param}.type", "input items", kind)


def _input(value: Any) -> None:
    if value is None:
        raise missing("input")
    if isinstance(value, str):
        string(value, "input")
        return
    if not isinstance(value, list):
        raise invalid_type("input", "a string or an array of input items", value)
    for index, item in enumerate(value):
        _item(item, f"input[{index}]")


def _tools(value: Any) -> None:
    """Function tools are checked here; which other types are served is `wire.responses`'s
    word (it refuses the ones it cannot translate)."""
    if value is None:
        return
    for index, tool in enumerate(array(value, "tools", MAX_TOOLS)):
        where = f"tools[{index}]"
        tool = mapping(tool, where)
        required_string(tool.get("type"), f"{where}.type")
        if tool["type"] == "function":
            required_string(tool.get("name"), f"{where}.name")
            string(tool.get("description"), f"{where}.description")
            if tool.get("parameters") is not None:
                mapping(tool["parameters"], f"{where}.parameters")
            boolean(tool.get("strict"), f"{where}.strict")


def _tool_choice(value: Any) -> None:
    if value is None or isinstance(value, str):
        one_of(value, "tool_choice", _TOOL_CHOICES)
        return
    choice = mapping(value, "tool_choice")
    required_string(choice.get("type"), "tool_choice.type")
    if choice["type"] == "function":
        required_string(choice.get("name"), "tool_choice.name")


def _text(value: Any) -> None:
    if value is None:
        return
    text = mapping(value, "text")
    one_of(text.get("verbosity"), "text.verbosity", ("low", "medium", "high"))
    if text.get("format") is None:
        return
    fmt = mapping(text["format"], "text.format")
    kind = fmt.get("type")
    if kind is None:
        raise missing("text.format.type")
    one_of(kind, "text.format.type", ("text", "json_schema", "json_object"))
    if kind == "json_schema":
        required_string(fmt.get("name"), "text.format.name")
        mapping(fmt.get("schema"), "text.format.schema")
        string(fmt.get("description"), "text.format.description")
        boolean(fmt.get("strict"), "text.format.strict")


def validate_responses_request(body: dict[str, Any]) -> dict[str, Any]:
    """Check a parsed `POST /v1/responses` body; raise InvalidRequest on the first fault."""
    model(body)
    _input(body.get("input"))
    string(body.get("instructions"), "instructions")
    string(body.get("previous_response_id"), "previous_response_id")
    number(body.get("temperature"), "temperature", 0, 2)
    number(body.get("top_p"), "top_p", 0, 1)
    integer(body.get("max_output_tokens"), "max_output_tokens", 16)
    for flag in ("stream", "store", "parallel_tool_calls", "background"):
        boolean(body.get(flag), flag)
    string(body.get("user"), "user")
    string(body.get("safety_identifier"), "safety_identifier", 64)
    metadata(body.get("metadata"), "metadata")
    _tools(body.get("tools"))
    _tool_choice(body.get("tool_choice"))
    _text(body.get("text"))
    if body.get("reasoning") is not None:
        reasoning = mapping(body["reasoning"], "reasoning")
        string(reasoning.get("effort"), "reasoning.effort")
        string(reasoning.get("summary"), "reasoning.summary")
    if body.get("include") is not None:
        for index, name in enumerate(array(body["include"], "include")):
            required_string(name, f"include[{index}]")
    one_of(body.get("truncation"), "truncation", ("auto", "disabled"))
    return body
