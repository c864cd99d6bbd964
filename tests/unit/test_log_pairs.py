"""The text format's `key=value` pairs: numbers and booleans read as JSON spells them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from savegate.observe.logs import _pairs

VALUES: list[Any] = [
    True,
    False,
    0.0,
    -0.0,
    0.3,
    12.5,
    1e-4,
    5e-5,
    123456789012.3,
    1e15,
    1e16,
    -2.5e20,
    float("nan"),
    float("inf"),
    [1, "a"],
    {"k": None},
]


@pytest.mark.parametrize("value", VALUES)
def test_a_value_reads_as_json(value: Any) -> None:
    assert _pairs({"v": value}) == f"v={orjson.dumps(value).decode()}"


def test_words_integers_and_nothing() -> None:
    fields = {"a": "word", "b": "two words", "c": 7, "d": None, "e": ""}
    assert _pairs(fields) == 'a=word b="two words" c=7 d=- e=""'
