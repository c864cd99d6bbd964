"""Any JSON in, through every validator then the translators behind it: an InvalidRequest,
or a translation that is itself valid and serialises. Never another exception."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from savegate.api.anthropic.convert import to_openai
from savegate.api.anthropic.validate import validate_create_request, validate_messages_request
from savegate.core.errors import InvalidRequest
from savegate.providers.anthropic.convert import to_anthropic
from savegate.providers.gemini.convert import to_gemini
from savegate.wire.checks import MAX_DEPTH
from savegate.wire.responses import chat_body, from_chat, input_items, response_object
from savegate.wire.validate import (
    parse_json_object,
    validate_chat_request,
    validate_completion_request,
    validate_embedding_request,
)
from savegate.wire.validate_responses import validate_responses_request
from tests.unit import strategies as s

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ANSWER = {
    "model": "m",
    "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1},
}


def accepted(validate: Callable[[dict[str, Any]], Any], body: Any) -> dict[str, Any] | None:
    """The body as the server sees it (sent over the wire, parsed) if it validates, None
    if it gets a 400; any other exception fails the test."""
    raw = json.dumps(body).encode()  # not orjson: it writes 254 levels at most
    try:
        parsed = parse_json_object(raw)
        validate(parsed)
    except InvalidRequest as exc:
        assert exc.status == 400 and exc.message
        return None
    return parsed


def translated(translate: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """The translation, serialisable, or None where the translator refuses what it cannot
    express (a 400 too)."""
    try:
        result = translate()
    except InvalidRequest:
        return None
    orjson.dumps(result)
    return result


def check_chat(body: dict[str, Any]) -> None:
    """A valid chat request translates for every provider dialect."""
    validate_chat_request(body)
    translated(lambda: to_anthropic(body, "m"))
    translated(lambda: to_gemini(body))


@PROPERTY
@given(st.binary(max_size=64))
def test_any_bytes_parse_or_400(raw: bytes) -> None:
    with contextlib.suppress(InvalidRequest):
        assert isinstance(parse_json_object(raw), dict)


@PROPERTY
@given(st.dictionaries(st.text(max_size=4), s.hostile, max_size=3))
def test_what_parses_serialises_again(body: dict[str, Any]) -> None:
    # orjson reads 1024 levels but writes only 254: the parse limit keeps us far below.
    parsed = accepted(lambda parsed: parsed, body)
    if parsed is not None:
        orjson.dumps({"wrapped": [parsed]})


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 300, 1000])
def test_nesting_limit(depth: int) -> None:
    # The body is one level, `metadata` the rest.
    inner = b"[" * (depth - 1) + b"]" * (depth - 1)
    raw = b'{"model": "m", "metadata": ' + inner + b"}"
    if depth <= MAX_DEPTH:
        assert parse_json_object(raw)["model"] == "m"
    else:
        with pytest.raises(InvalidRequest) as info:
            parse_json_object(raw)
        assert info.value.code == "nesting_too_deep"
        assert info.value.param == "metadata" + "[0]" * (MAX_DEPTH - 1)


@PROPERTY
@given(s.chat_bodies)
def test_chat_requests(body: Any) -> None:
    parsed = accepted(validate_chat_request, body)
    if parsed is not None:
        check_chat(parsed)


@PROPERTY
@given(s.completion_bodies)
def test_completion_requests(body: Any) -> None:
    accepted(validate_completion_request, body)


@PROPERTY
@given(s.embedding_bodies)
def test_embedding_requests(body: Any) -> None:
    accepted(validate_embedding_request, body)


@PROPERTY
@given(s.response_bodies)
def test_responses_requests(body: Any) -> None:
    body = accepted(validate_responses_request, body)
    if body is None:
        return
    chat = translated(lambda: chat_body(body, input_items(body)))
    if chat is not None:
        check_chat(chat)
    orjson.dumps(from_chat("resp_1", body, ANSWER))
    orjson.dumps(
        response_object("resp_1", body, model="m", output=[], status="failed", usage_=None)
    )


@PROPERTY
@given(s.anthropic_bodies)
def test_messages_requests(body: Any) -> None:
    if accepted(validate_messages_request, body) is not None:
        parsed = accepted(validate_create_request, body)
        if parsed is not None:
            check_chat(to_openai(parsed))
