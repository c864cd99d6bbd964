"""The semantic cache in one gateway in front of the fake upstream, embeddings by the
embedded model (SmolLM2, through the model process): near-duplicates hit above the
threshold, different questions and other scopes miss, hits are replayed in every chat
dialect and are usage rows of their own.

With the embedded model's vectors centred, unrelated questions score about 0.1, a changed
country about 0.8, the near-duplicates here 0.93-0.94: the threshold is 0.9.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.conftest import Service, start_gateway, stop, stop_model
from tests.wire_rules import chat_stream_chunks

QUESTION = "What is the capital of France?"
SAME_TEXT = "  what is the CAPITAL   of france?"  # the same once normalised
NEAR = ["What is the capital city of France?", "What is the capital of France"]
OTHER = "Write a haiku about the ocean at night."
INTERNAL_KEY = "savegate-semantic-cache"
_seeds = itertools.count(1000)


@pytest.fixture(scope="module")
def semantic(tmp_path_factory: pytest.TempPathFactory, fake_upstream: Service) -> Iterator[Service]:
    os.environ.setdefault("FAKE_UPSTREAM_KEY", "sk-fake-upstream-key")
    workdir = tmp_path_factory.mktemp("semantic")
    config = {
        "usage": {"flush_seconds": 0.1},
        "cache": {"semantic": {"groups": ["text-basic", "ticks-*", "status-*"], "threshold": 0.9}},
        "aliases": {"basic-alias": "text-basic"},
        "providers": {
            "fake": {
                "base_url": fake_upstream.base_url,
                "api_key_env": "FAKE_UPSTREAM_KEY",
                "models": ["*"],
            }
        },
    }
    service = start_gateway(workdir, config)
    yield service
    stop(service.process)
    stop_model(workdir / "data")


def body(content: str, seed: int, **extra: object) -> dict:
    """A repeatable request; each test's own `seed` makes a scope of its own."""
    messages = [{"role": "user", "content": content}]
    return {"model": "text-basic", "messages": messages, "temperature": 0, "seed": seed, **extra}


def upstream_calls(fake: Service, seed: int) -> int:
    log = httpx.get(fake.url + "/_log").json()["requests"]
    return sum(1 for r in log if r["body"].get("seed") == seed)


def ask(service: Service, request: dict, key: str | None = None) -> tuple[httpx.Headers, dict]:
    client = openai.OpenAI(api_key=key or service.key, base_url=service.base_url, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(**request)
    return raw.headers, raw.http_response.json()


def state(headers: httpx.Headers) -> tuple[str, str | None]:
    return headers["x-savegate-cache"], headers.get("x-savegate-cache-kind")


def admin(service: Service, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {service.keys['admin']}"}
    return httpx.request(method, service.url + path, headers=headers, timeout=30, **kwargs)


def test_near_duplicates_hit_and_a_different_question_misses(
    semantic: Service, fake_upstream: Service
):
    seed = next(_seeds)
    headers, first = ask(semantic, body(QUESTION, seed))
    assert state(headers) == ("miss", None)
    headers, same = ask(semantic, body(SAME_TEXT, seed))
    assert state(headers) == ("hit", "semantic")
    assert headers["x-savegate-cache-similarity"] == "1.0000"  # the same text: not embedded
    for near in NEAR:
        headers, answer = ask(semantic, body(near, seed))
        assert state(headers) == ("hit", "semantic"), near
        assert 0.9 <= float(headers["x-savegate-cache-similarity"]) < 1.0
        assert answer["choices"] == first["choices"] and answer["usage"] == first["usage"]
        assert answer["id"] != first["id"] and answer["model"] == first["model"]
    assert same["choices"] == first["choices"]
    headers, _ = ask(semantic, body(OTHER, seed))
    assert state(headers) == ("miss", None)
    assert upstream_calls(fake_upstream, seed) == 2
    # The alias names the same public model: the same scope.
    headers, _ = ask(semantic, {**body(NEAR[0], seed), "model": "basic-alias"})
    assert state(headers) == ("hit", "semantic")
    assert upstream_calls(fake_upstream, seed) == 2


def test_other_answer_shaping_fields_are_other_scopes(semantic: Service, fake_upstream: Service):
    seed = next(_seeds)
    tool = {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
    }
    assert state(ask(semantic, body(QUESTION, seed))[0]) == ("miss", None)
    others = [
        body(QUESTION, seed, tools=[tool]),
        body(QUESTION, seed, tools=[tool], tool_choice="none"),
        body(QUESTION, seed, response_format={"type": "json_object"}),
        body(QUESTION, seed, max_tokens=20),
        body(QUESTION, seed, temperature=0.5),
    ]
    for other in others:
        assert state(ask(semantic, other)[0]) == ("miss", None), other
    # Each of those is now a scope with an entry of its own.
    assert state(ask(semantic, {**others[0], "messages": body(NEAR[0], seed)["messages"]})[0]) == (
        "hit",
        "semantic",
    )
    assert upstream_calls(fake_upstream, seed) == 1 + len(others)


def test_the_conversation_shape_is_part_of_the_scope(semantic: Service, fake_upstream: Service):
    seed = next(_seeds)
    system = {"role": "system", "content": "You are terse."}
    asked = body(QUESTION, seed)
    with_system = {**asked, "messages": [system, *asked["messages"]]}
    assert state(ask(semantic, with_system)[0]) == ("miss", None)
    assert state(ask(semantic, asked)[0]) == ("miss", None)  # no system message: another scope
    same_system = {"role": "system", "content": "  you are TERSE."}  # the same, normalised
    near = {**asked, "messages": [same_system, *body(NEAR[0], seed)["messages"]]}
    assert state(ask(semantic, near)[0]) == ("hit", "semantic")
    other_system = {"role": "system", "content": "You are verbose."}
    assert state(ask(semantic, {**near, "messages": [other_system, *asked["messages"]]})[0]) == (
        "miss",
        None,
    )
    earlier = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
    ]
    turn = {**asked, "messages": [*earlier, *asked["messages"]]}
    assert state(ask(semantic, turn)[0]) == ("miss", None)
    other_reply = [earlier[0], {"role": "assistant", "content": "Hey."}, *asked["messages"]]
    assert state(ask(semantic, {**asked, "messages": other_reply})[0]) == ("miss", None)
    assert upstream_calls(fake_upstream, seed) == 5


def test_directives_and_unrepeatable_requests(semantic: Service, fake_upstream: Service):
    seed = next(_seeds)
    ask(semantic, body(QUESTION, seed))
    client = openai.OpenAI(api_key=semantic.key, base_url=semantic.base_url, max_retries=0)
    for header, expected in (("no-store", "bypass"), ("refresh", "miss")):
        raw = client.chat.completions.with_raw_response.create(
            **body(NEAR[0], seed), extra_headers={"x-savegate-cache": header}
        )
        assert raw.headers["x-savegate-cache"] == expected
    unrepeatable = body(NEAR[0], seed)
    del unrepeatable["temperature"], unrepeatable["seed"]
    assert state(ask(semantic, unrepeatable)[0]) == ("bypass", None)
    assert upstream_calls(fake_upstream, seed) == 3


def test_a_semantic_hit_is_replayed_as_a_stream_in_every_dialect(
    semantic: Service, fake_upstream: Service
):
    seed = next(_seeds)
    headers, first = ask(semantic, body(QUESTION, seed))
    assert state(headers) == ("miss", None)
    request = {**body(NEAR[0], seed), "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream(
        "POST",
        semantic.base_url + "/chat/completions",
        json=request,
        headers={"Authorization": f"Bearer {semantic.key}"},
        timeout=60,
    ) as response:
        assert state(response.headers) == ("hit", "semantic")
        chunks = chat_stream_chunks(response.read(), include_usage=True)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == first["choices"][0]["message"]["content"]
    assert chunks[-1]["usage"] == first["usage"]

    client = openai.OpenAI(api_key=semantic.key, base_url=semantic.base_url, max_retries=0)
    with client.chat.completions.stream(**body(NEAR[1], seed)) as stream:
        assert stream.get_final_completion().choices[0].message.content == text

    # /v1/messages is translated to chat first: a scope of its own (its max_tokens).
    messages = anthropic.Anthropic(api_key=semantic.key, base_url=semantic.url, max_retries=0)
    request = {"model": "text-basic", "max_tokens": seed, "extra_body": {"temperature": 0}}
    live = messages.messages.create(**request, messages=[{"role": "user", "content": QUESTION}])
    with messages.messages.stream(**request, messages=[{"role": "user", "content": NEAR[0]}]) as s:
        replayed = s.get_final_message()
    assert replayed.content[0].text == live.content[0].text
    assert replayed.usage.output_tokens == live.usage.output_tokens
    log = httpx.get(fake_upstream.url + "/_log").json()["requests"]
    limits = [r["body"].get("max_tokens") or r["body"].get("max_completion_tokens") for r in log]
    assert limits.count(seed) == 1


def test_hits_are_usage_rows_flagged_semantic(semantic: Service):
    key = admin(semantic, "POST", "/admin/keys", json={"name": "semantic-usage"}).json()
    seed = next(_seeds)
    ask(semantic, body(QUESTION, seed), key["secret"])
    headers, _ = ask(semantic, body(NEAR[0], seed), key["secret"])
    assert state(headers) == ("hit", "semantic")
    rows = admin(semantic, "GET", "/admin/usage/requests", params={"key_id": key["id"]}).json()
    miss, hit = sorted(rows["data"], key=lambda row: row["id"])
    assert (miss["cache_hit"], miss["semantic_cache_hit"]) == (False, False)
    assert (hit["cache_hit"], hit["semantic_cache_hit"]) == (True, True)
    assert hit["cost_usd"] == 0 and hit["list_cost_usd"] == miss["list_cost_usd"] > 0
    assert hit["prompt_tokens"] == miss["prompt_tokens"] and hit["model"] == miss["model"]
    spend = admin(semantic, "GET", "/admin/spend", params={"key_id": key["id"]}).json()
    assert spend["savings_usd"] == pytest.approx(miss["list_cost_usd"] * 2 - miss["cost_usd"])
    # The embeddings were not billed to the key: they are the internal key's rows.
    embedded = admin(
        semantic, "GET", "/admin/usage/requests", params={"key_id": INTERNAL_KEY}
    ).json()["data"]
    mine = [row for row in embedded if row["request_id"] in (miss["request_id"], hit["request_id"])]
    assert len(mine) == 2
    assert {row["endpoint"] for row in mine} == {"embeddings"}
    assert all(row["prompt_tokens"] > 0 and row["cost_usd"] == 0 for row in mine)  # free


def _at_once(service: Service, requests: list[dict]) -> list[httpx.Response]:
    async def fire() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {service.key}"}
        async with httpx.AsyncClient(base_url=service.base_url, timeout=60) as client:
            calls = [client.post("/chat/completions", json=r, headers=headers) for r in requests]
            return list(await asyncio.gather(*calls))

    return asyncio.run(fire())


@pytest.mark.parametrize("stream", [False, True])
def test_near_identical_misses_at_once_make_one_upstream_call(
    semantic: Service, fake_upstream: Service, stream: bool
):
    seed = next(_seeds)
    texts = [QUESTION, SAME_TEXT, QUESTION.upper(), *NEAR]  # the answer takes a second
    answers = _at_once(semantic, [body(t, seed, model="ticks-20", stream=stream) for t in texts])
    assert {a.status_code for a in answers} == {200}
    assert upstream_calls(fake_upstream, seed) == 1
    states = sorted(state(a.headers) for a in answers)
    assert states == [("hit", "semantic")] * 4 + [("miss", None)]
    if stream:
        replies = [
            "".join(
                c["choices"][0]["delta"].get("content") or ""
                for c in chat_stream_chunks(a.content, include_usage=False)
                if c["choices"]
            )
            for a in answers
        ]
    else:
        replies = [a.json()["choices"][0]["message"]["content"] for a in answers]
    assert len(set(replies)) == 1


def test_waiting_misses_make_their_own_calls_when_the_first_fails(
    semantic: Service, fake_upstream: Service
):
    seed = next(_seeds)
    texts = [QUESTION, SAME_TEXT, QUESTION.upper()]
    answers = _at_once(semantic, [body(t, seed, model="status-500") for t in texts])
    assert {a.status_code for a in answers} == {500}
    assert upstream_calls(fake_upstream, seed) >= 3  # each its own; nothing was kept


def test_a_key_with_the_cache_off_is_not_served_from_it(semantic: Service):
    off = admin(semantic, "POST", "/admin/keys", json={"name": "off", "cache": False}).json()
    seed = next(_seeds)
    ask(semantic, body(QUESTION, seed))
    headers, _ = ask(semantic, body(QUESTION, seed), off["secret"])
    assert "x-savegate-cache" not in headers
