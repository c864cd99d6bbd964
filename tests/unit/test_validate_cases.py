"""The faults issue 13 found, one by one: each is a 400 naming the field, in the param
spelling of the endpoint's dialect."""

from __future__ import annotations

import json
from typing import Any

import pytest

from savegate.api.anthropic.validate import validate_create_request
from savegate.core.errors import InvalidRequest
from savegate.wire.checks import MAX_DEPTH, MAX_N, MAX_TOOLS
from savegate.wire.validate import parse_json_object, validate_chat_request
from savegate.wire.validate_responses import validate_responses_request

WRONG_CONTENT: list[Any] = [None, True, 0, -1, [1, "a", None], [{"type": "input_text"}]]
DEEP = "[" * 300 + "]" * 300


def refused(validate: Any, raw: str) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        validate(parse_json_object(raw.encode()))
    return info.value


@pytest.mark.parametrize("content", [*map(json.dumps, WRONG_CONTENT), DEEP])
def test_responses_content(content: str) -> None:
    raw = f'{{"model": "m", "input": [{{"role": "user", "content": {content}}}]}}'
    error = refused(validate_responses_request, raw)
    assert error.param is not None and error.param.startswith("input[0].content")


@pytest.mark.parametrize("content", [*map(json.dumps, WRONG_CONTENT[:5]), DEEP])
def test_messages_content(content: str) -> None:
    raw = (
        f'{{"model": "m", "max_tokens": 5, "messages": [{{"role": "user", "content": {content}}}]}}'
    )
    error = refused(validate_create_request, raw)
    assert error.param is not None
    assert error.param.startswith(("messages.0.content", "messages[0].content"))


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("system", [{"type": "text", "text": "a"}, 1], "system.1"),
        ("system", [{"type": "image"}], "system.0.type"),
        ("tools", [{"name": 1}], "tools.0.name"),
        ("tools", [1], "tools.0"),
        ("tools", "x", "tools"),
        ("tool_choice", {"type": "tool"}, "tool_choice.name"),
        ("stop_sequences", ["a"] * 5, "stop_sequences"),
    ],
)
def test_messages_fields(field: str, value: Any, param: str) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    assert refused(validate_create_request, json.dumps({**body, field: value})).param == param


@pytest.mark.parametrize("field", ["metadata", "user", "store", "tool_choice"])
def test_responses_fields_nested_300_deep(field: str) -> None:
    # Issue 13, 6: these reached the upstream, were billed, then failed to serialise.
    error = refused(
        validate_responses_request, f'{{"model": "m", "input": "x", "{field}": {DEEP}}}'
    )
    assert error.code == "nesting_too_deep"
    assert error.param == field + "[0]" * (MAX_DEPTH - 1)


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"n": MAX_N + 1}, "n", "invalid_value"),
        (
            {"tools": [{"type": "function", "function": {"name": "f"}}] * (MAX_TOOLS + 1)},
            "tools",
            "array_above_max_length",
        ),
        ({"metadata": {"k": "v" * 513}}, "metadata.k", "string_above_max_length"),
        ({"metadata": {str(i): "v" for i in range(17)}}, "metadata", "invalid_value"),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": 1}}]}]},
            "messages[0].tool_calls[0].function.name",
            "invalid_type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
            "messages[0].content[0].text",
            "invalid_type",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": "x"}},
            "response_format.json_schema",
            "invalid_type",
        ),
    ],
)
def test_chat_bounds(extra: dict[str, Any], param: str, code: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], **extra}
    error = refused(validate_chat_request, json.dumps(body))
    assert (error.param, error.code) == (param, code)


@pytest.mark.parametrize(
    ("message", "param", "code"),
    [
        # A turn of a role and its text alone passes on a short path: its edges.
        ({"role": ["user"], "content": "x"}, "messages[0].role", "invalid_type"),
        ({"role": {"user": 1}, "content": "x"}, "messages[0].role", "invalid_type"),
        (
            {"role": "tool", "content": "x"},
            "messages[0].tool_call_id",
            "missing_required_parameter",
        ),
        ({"role": "function", "content": "x"}, "messages[0].name", "missing_required_parameter"),
        ({"role": "robot", "content": "x"}, "messages[0].role", "invalid_value"),
        ({"role": "user", "content": 5}, "messages[0].content", "invalid_type"),
        ({"content": "x", "name": "n"}, "messages[0].role", "missing_required_parameter"),
    ],
)
def test_chat_message_shapes(message: dict[str, Any], param: str, code: str) -> None:
    body = {"model": "m", "messages": [message]}
    error = refused(validate_chat_request, json.dumps(body))
    assert (error.param, error.code) == (param, code)


@pytest.mark.parametrize("field", ["temperature", "n", "stop", "user", "tools", "metadata"])
def test_chat_null_fields_pass(field: str) -> None:
    # A field sent as null is as good as absent, whether or not its group's checks run.
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], field: None}
    assert validate_chat_request(parse_json_object(json.dumps(body).encode())) == body
