"""The semantic cache's in-process index: nearest rows by cosine within a scope, the same
text found without a vector, expiry, and the bound on rows (the oldest go first)."""

from __future__ import annotations

import numpy as np

from savegate.cache.entry import Entry
from savegate.cache.vectors import VectorIndex, text_key
from savegate.service.semantic_text import subject


def _unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def _entry(name: str) -> Entry:
    return Entry({"id": name, "choices": []}, "fake", 0.01)


def test_nearest_within_the_scope_and_the_same_text():
    index = VectorIndex(max_entries=100)
    index.add("a", _unit(1, 0, 0), text_key("one"), _entry("one"), expires=10.0)
    index.add("a", _unit(0, 1, 0), text_key("two"), _entry("two"), expires=10.0)
    index.add("b", _unit(1, 0.1, 0), text_key("three"), _entry("three"), expires=10.0)
    found = index.nearest("a", _unit(1, 0.2, 0), now=0.0)
    assert found is not None and found.entry.answer["id"] == "one"
    assert found.similarity == np.float32(_unit(1, 0.2, 0) @ _unit(1, 0, 0))
    assert index.nearest("c", _unit(1, 0, 0), now=0.0) is None
    assert index.nearest("a", _unit(1, 0), now=0.0) is None  # another dimension
    same = index.same_text("a", text_key("two"), now=0.0)
    assert same is not None and same.answer["id"] == "two"
    assert index.same_text("b", text_key("two"), now=0.0) is None


def test_expired_rows_never_match_and_are_pruned():
    index = VectorIndex(max_entries=100)
    index.add("a", _unit(1, 0), text_key("old"), _entry("old"), expires=5.0)
    index.add("a", _unit(0, 1), text_key("new"), _entry("new"), expires=50.0)
    found = index.nearest("a", _unit(1, 0), now=10.0)
    assert found is not None and found.entry.answer["id"] == "new"
    assert index.same_text("a", text_key("old"), now=10.0) is None
    index.prune(now=10.0)
    assert len(index) == 1
    index.prune(now=60.0)
    assert len(index) == 0 and index.nearest("a", _unit(1, 0), now=0.0) is None


def test_the_bound_keeps_the_newest_rows_across_scopes():
    index = VectorIndex(max_entries=3)
    for n in range(20):  # past the first allocation: the matrices grow
        index.add(f"s{n % 2}", _unit(1, n), text_key(str(n)), _entry(str(n)), expires=99.0)
    index.prune(now=0.0)
    assert len(index) == 3
    kept = {str(n) for n in range(20) if index.same_text(f"s{n % 2}", text_key(str(n)), 0.0)}
    assert kept == {"17", "18", "19"}
    found = index.nearest("s1", _unit(1, 19), now=0.0)
    assert found is not None and found.entry.answer["id"] == "19"


def test_what_is_compared_and_what_is_the_scope():
    base = {
        "model": "m",
        "temperature": 0,
        "messages": [
            {"role": "system", "content": "Be  TERSE."},
            {"role": "user", "content": [{"type": "text", "text": "Hi\tthere"}]},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "\uff37hat now?"},
        ],
    }
    about = subject(base, "m", ["chat"])
    assert about.text == "hi there\nwhat now?"
    ignored = {**base, "user": "u", "stream": True, "stream_options": {"include_usage": True}}
    assert subject(ignored, "m", ["chat"]).scope == about.scope
    reworded = {**base, "messages": [*base["messages"][:3], {"role": "user", "content": "So?"}]}
    assert subject(reworded, "m", ["chat"]).scope == about.scope
    system = {"role": "system", "content": "be terse. "}  # the same system prompt, normalised
    respaced = {**base, "messages": [system, *base["messages"][1:]]}
    assert subject(respaced, "m", ["chat"]).scope == about.scope
    other_turn = {
        **base,
        "messages": [*base["messages"][:2], {"role": "assistant", "content": "Yo"}],
    }
    others = [
        subject(base, "other-model", ["chat"]),
        subject(base, "m", ["chat", "key_1"]),
        subject(
            {**base, "tools": [{"type": "function", "function": {"name": "f"}}]}, "m", ["chat"]
        ),
        subject({**base, "response_format": {"type": "json_object"}}, "m", ["chat"]),
        subject(other_turn, "m", ["chat"]),
        subject(
            {
                **base,
                "messages": [{"role": "system", "content": "Be kind."}, *base["messages"][1:]],
            },
            "m",
            ["chat"],
        ),
    ]
    assert len({about.scope, *(other.scope for other in others)}) == 1 + len(others)
