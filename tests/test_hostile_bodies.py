"""A battery of hostile bodies against every POST endpoint of the real server: each gets
a 4xx in its endpoint's error shape, none reaches the upstream, and the server keeps
serving (issue 13: wrong types where a translation expects a shape were 500s)."""

from __future__ import annotations

import copy
import json
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.conftest import Service
from tests.test_bad_input import assert_error

DEPTH = 300


def nested(kind: type, depth: int = DEPTH) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value] if kind is list else {"a": value}
    return value


WRONG: dict[str, Any] = {
    "null": None,
    "true": True,
    "zero": 0,
    "minus_one": -1,
    "float": 1.5,
    "string": "x",
    "object": {"a": 1},
    "mixed": [1, "a", None, True, {}, [2]],
    "deep_list": nested(list),
    "deep_object": nested(dict),
}
ANY = tuple(WRONG)


def but(*allowed: str) -> tuple[str, ...]:
    """Every wrong value except those the field may hold."""
    return tuple(kind for kind in ANY if kind not in allowed)


USER = {"role": "user", "content": "hi"}
FUNCTION = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
# endpoint → (path, a valid body, its fields and the wrong values each must refuse)
ENDPOINTS: dict[str, tuple[str, dict[str, Any], dict[str, tuple[str, ...]]]] = {
    "chat": (
        "/v1/chat/completions",
        {"model": "text-basic", "messages": [USER]},
        {
            "model": but("string"),
            "messages": ANY,
            "messages.0": ANY,
            "messages.0.role": ANY,
            "messages.0.content": but("string"),
            "messages.0.name": but("null", "string"),
            "tools": but("null"),
            "tool_choice": but("null"),
            "metadata": but("null"),
            "user": but("null", "string"),
            "n": but("null"),
            "temperature": but("null", "zero", "float"),
            "stop": but("null", "string"),
            "stream": but("null", "true"),
            "response_format": but("null"),
            "extra_field": ("deep_list", "deep_object"),
        },
    ),
    "completions": (
        "/v1/completions",
        {"model": "text-basic", "prompt": "hi"},
        {
            "model": but("string"),
            "prompt": but("string", "zero"),
            "n": but("null"),
            "max_tokens": but("null"),
            "echo": but("null", "true"),
            "metadata": ("deep_list", "deep_object"),
        },
    ),
    "embeddings": (
        "/v1/embeddings",
        {"model": "text-embedding-3-small", "input": "hi"},
        {
            "model": but("string"),
            "input": but("string", "zero"),
            "encoding_format": but("null"),
            "dimensions": but("null"),
            "user": but("null", "string"),
            "metadata": ("deep_list", "deep_object"),
        },
    ),
    "responses": (
        "/v1/responses",
        {"model": "text-basic", "input": [{"role": "user", "content": "hi"}]},
        {
            "model": but("string"),
            "input": but("string"),
            "input.0": ANY,
            "input.0.role": ANY,
            "input.0.content": but("string"),
            "instructions": but("null", "string"),
            "tools": but("null"),
            "tool_choice": but("null"),
            "metadata": but("null"),
            "user": but("null", "string"),
            "store": but("null", "true"),
            "text": but("null", "object"),
            "temperature": but("null", "zero", "float"),
            "max_output_tokens": but("null"),
            "previous_response_id": but("null", "string"),
        },
    ),
    "messages": (
        "/v1/messages",
        {"model": "text-basic", "max_tokens": 50, "messages": [USER]},
        {
            "model": but("string"),
            "max_tokens": ANY,
            "messages": ANY,
            "messages.0": ANY,
            "messages.0.role": ANY,
            "messages.0.content": but("string"),
            "system": but("null", "string"),
            "tools": but("null"),
            "tool_choice": but("null"),
            "metadata": but("null", "object"),
            "stop_sequences": but("null"),
            "temperature": but("null", "zero", "float"),
            "stream": but("null", "true"),
        },
    ),
}
# Shapes a field takes once it holds something, to reach the checks inside it.
INSIDE: dict[str, dict[str, Any]] = {
    "chat": {"tools": [FUNCTION], "response_format": {"type": "json_schema"}},
    "responses": {"tools": [{"type": "function", "name": "f"}], "text": {"format": {}}},
    "messages": {"tools": [{"name": "f", "input_schema": {}}], "system": [{"type": "text"}]},
}
VALID_INSIDE = {"type": ("string",), "name": ("string",), "input_schema": ("object",)}
WHOLE_BODIES = ["", "{", "[]", "null", '"x"', "1", "[" * 2000 + "]" * 2000]


def put(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    *parents, last = path.split(".")
    node: Any = body
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return body


def param(path: str) -> str:
    """A field path in OpenAI's `param` spelling: `input.0.content` → `input[0].content`."""
    out = ""
    for key in path.split("."):
        out += f"[{key}]" if key.isdigit() else (f".{key}" if out else key)
    return out


def battery() -> list[tuple[str, str, str | None, bytes]]:
    """(endpoint, case name, the param an OpenAI error must name, raw body)."""
    cases = []
    for name, (_, valid, fields) in ENDPOINTS.items():
        for field, kinds in fields.items():
            for kind in kinds:
                body = put(valid, field, WRONG[kind])
                expected = None if field == "extra_field" else param(field)
                cases.append((name, f"{field}={kind}", expected, json.dumps(body).encode()))
        for field, shape in INSIDE.get(name, {}).items():
            # Each member of the shape, wrong in turn: one level further in.
            for key in shape[0] if isinstance(shape, list) else shape:
                inner = f"{field}.0.{key}" if isinstance(shape, list) else f"{field}.{key}"
                for kind in but("null", *VALID_INSIDE.get(key, ())):
                    body = put(put(valid, field, shape), inner, WRONG[kind])
                    cases.append((name, f"{inner}={kind}", None, json.dumps(body).encode()))
        cases += [(name, f"whole={raw[:8]!r}", None, raw.encode()) for raw in WHOLE_BODIES]
    return cases


def upstream_requests(fake_upstream: Service) -> int:
    return len(httpx.get(fake_upstream.url + "/_log", timeout=10).json()["requests"])


def assert_anthropic_error(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["message"]


def test_hostile_bodies_get_4xx_and_never_reach_the_upstream(
    relay_gateway: Service, fake_upstream: Service
) -> None:
    cases = battery()
    before = upstream_requests(fake_upstream)
    statuses: Counter[tuple[str, int]] = Counter()
    faults = []
    with httpx.Client(headers={"Authorization": f"Bearer {relay_gateway.key}"}) as client:
        for endpoint, case, expected_param, raw in cases:
            path = ENDPOINTS[endpoint][0]
            response = client.post(relay_gateway.url + path, content=raw, timeout=30)
            statuses[endpoint, response.status_code] += 1
            try:
                if endpoint == "messages":
                    assert_anthropic_error(response)
                else:
                    error = assert_error(response, 400)
                    if expected_param is not None:
                        assert (error["param"] or "").startswith(expected_param), error
            except AssertionError as exc:
                faults.append(f"{endpoint} {case}: {str(exc)[:300]}")
    assert not faults, "\n".join(faults)
    assert upstream_requests(fake_upstream) == before, "a refused body reached the upstream"
    assert sum(statuses.values()) == len(cases) > 500
    assert all(status == 400 for _, status in statuses), statuses
    print(f"{len(cases)} hostile bodies: {dict(statuses)}")
    assert "Traceback" not in relay_gateway.output()


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_the_valid_bodies_are_served(relay_gateway: Service, endpoint: str) -> None:
    # The battery's bodies differ from these by one field: these must succeed.
    path, valid, _ = ENDPOINTS[endpoint]
    response = httpx.post(
        relay_gateway.url + path,
        json=valid,
        headers={"Authorization": f"Bearer {relay_gateway.key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
