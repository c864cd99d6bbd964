"""The exact cache's key: numbers that are equal are one key, the others stay apart."""

from __future__ import annotations

import orjson

from savegate.service.cache import canonical_fields, repeatable


def test_integral_floats_are_written_as_ints():
    body = {"temperature": 0.0, "top_p": 1.0, "presence_penalty": -0.0, "user": "u"}
    assert canonical_fields(body, ("user",)) == {
        "temperature": 0,
        "top_p": 1,
        "presence_penalty": 0,
    }
    assert orjson.dumps(canonical_fields({"top_p": 1.0}, ())) == b'{"top_p":1}'


def test_other_numbers_are_left_as_they_are():
    body = {"temperature": 0.7, "huge": 1e300, "seed": 2**62 + 1, "tools": [{"x": 1.0}]}
    fields = canonical_fields(body, ())
    assert fields == body and type(fields["huge"]) is float
    assert fields["tools"] is body["tools"]  # only top-level numbers
    orjson.dumps(fields)


def test_repeatable_by_any_zero_temperature_or_a_seed():
    for body in ({"temperature": 0}, {"temperature": 0.0}, {"temperature": -0.0}, {"seed": 0}):
        assert repeatable(body, "chat", cache_all=False), body
    assert not repeatable({"temperature": 0.2}, "chat", cache_all=False)
    assert repeatable({}, "embeddings", cache_all=False)


def test_responses_that_change_state_upstream_are_never_repeatable():
    for body in ({"conversation": "conv_1"}, {"background": True}):
        assert not repeatable({**body, "temperature": 0}, "responses", cache_all=True), body
    assert repeatable({"temperature": 0, "previous_response_id": "r"}, "responses", False)
