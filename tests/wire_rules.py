"""The wire rules of an OpenAI chat stream (docs/wire-format.md, "Chat completions,
streaming"), checked on the bytes a client received."""

from __future__ import annotations

import re
from typing import Any

import orjson

EVENT = re.compile(rb"data: (\{[^\n]*\})\n\n")


def chat_stream_chunks(raw: bytes, include_usage: bool) -> list[dict[str, Any]]:
    """The chunks of `raw`, once every rule that fixes bytes and order holds."""
    assert raw.endswith(b"data: [DONE]\n\n"), raw[-80:]
    body = raw[: -len(b"data: [DONE]\n\n")]
    events = EVENT.findall(body)
    assert b"".join(b"data: " + e + b"\n\n" for e in events) == body  # nothing else at all
    chunks = [orjson.loads(event) for event in events]
    for event, chunk in zip(events, chunks, strict=True):
        assert orjson.dumps(chunk) == event  # compact JSON on one line
    head = {(c["id"], c["object"], c["created"], c["model"]) for c in chunks}
    assert len(head) == 1 and next(iter(head))[1] == "chat.completion.chunk"
    usage = [c for c in chunks if not c["choices"]]
    if include_usage:
        assert len(usage) == 1 and chunks[-1] is usage[0] and usage[0]["usage"]
    else:
        assert not usage
    seen: dict[int, list[dict[str, Any]]] = {}
    firsts: list[int] = []
    for chunk in chunks:
        if not chunk["choices"]:
            continue
        (choice,) = chunk["choices"]
        assert set(choice) >= {"index", "delta", "logprobs", "finish_reason"}
        index = choice["index"]
        if index not in seen:
            firsts.append(index)
            delta = choice["delta"]
            assert delta["role"] == "assistant" and "content" in delta
        else:
            assert "role" not in choice["delta"]
        seen.setdefault(index, []).append(choice)
    assert firsts == sorted(firsts)
    for choices in seen.values():
        *body_choices, last = choices
        assert last["finish_reason"] and last["delta"] == {}
        assert all(c["finish_reason"] is None for c in body_choices)
        named: set[int] = set()
        for choice in body_choices:
            for call in choice["delta"].get("tool_calls") or []:
                assert "function" in call
                if call["index"] not in named:
                    named.add(call["index"])
                    assert call["id"] and call["type"] == "function"
                    assert call["function"]["name"] and call["function"]["arguments"] == ""
                else:
                    assert set(call) == {"index", "function"}
                    assert set(call["function"]) == {"arguments"}
    return chunks
