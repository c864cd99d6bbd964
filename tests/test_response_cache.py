"""The exact response cache, in one gateway process (memory backend), in front of the fake
upstream: hits, misses and bypasses, streams replayed by the wire rules whichever way the
answer was first produced, every endpoint, single flight, usage rows and savings."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.conftest import Service, start_gateway, stop
from tests.fakes.upstream import assemble, fixture_events, is_usage_event
from tests.wire_rules import chat_stream_chunks

DISCOUNT = 0.25
ANTHROPIC_EVENTS = {
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
}


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory, fake_upstream: Service) -> Iterator[Service]:
    os.environ.setdefault("FAKE_UPSTREAM_KEY", "sk-fake-upstream-key")
    config = {
        "local": {"enabled": False},
        "usage": {"flush_seconds": 0.1},
        "cache": {"models": ["*"]},
        "aliases": {"basic-alias": "text-basic"},
        "providers": {
            "fake": {
                "base_url": fake_upstream.base_url,
                "api_key_env": "FAKE_UPSTREAM_KEY",
                "models": ["*"],
                "discount": DISCOUNT,
            }
        },
    }
    service = start_gateway(tmp_path_factory.mktemp("cache"), config)
    yield service
    stop(service.process)


def marker() -> list[dict]:
    """Messages no other test sends, so that the fake's log tells this test's calls."""
    return [{"role": "user", "content": f"hello {uuid.uuid4().hex}"}]


def upstream_calls(fake: Service, messages: list[dict]) -> int:
    log = httpx.get(fake.url + "/_log").json()["requests"]
    return sum(
        1
        for r in log
        if r["body"].get("messages") == messages
        or r["body"].get("prompt") == messages[0]["content"]
        or r["body"].get("input") == messages[0]["content"]
    )


def post(service: Service, body: dict, path: str = "/chat/completions", **headers: str):
    headers = {"Authorization": f"Bearer {service.key}", **headers}
    return httpx.post(service.base_url + path, json=body, headers=headers, timeout=30)


def admin(service: Service, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {service.keys['admin']}"}
    return httpx.request(method, service.url + path, headers=headers, timeout=30, **kwargs)


def test_hit_miss_and_bypass_by_request_and_headers(cached: Service, fake_upstream: Service):
    messages = marker()
    body = {"model": "text-basic", "messages": messages, "temperature": 0}
    states = [post(cached, body).headers["x-savegate-cache"] for _ in range(2)]
    assert states == ["miss", "hit"]
    assert upstream_calls(fake_upstream, messages) == 1
    cases = [
        ({"x-savegate-cache": "no-store"}, "bypass", 2),
        ({"Cache-Control": "no-store"}, "bypass", 3),
        ({"x-savegate-cache": "refresh"}, "miss", 4),
        ({"Cache-Control": "no-cache"}, "miss", 5),
        ({"Cache-Control": "max-age=0"}, "hit", 5),
    ]
    for headers, state, calls in cases:
        assert post(cached, body, **headers).headers["x-savegate-cache"] == state, headers
        assert upstream_calls(fake_upstream, messages) == calls, headers
    # Not repeatable: no temperature 0 and no seed.
    random = {"model": "text-basic", "messages": messages}
    assert [post(cached, random).headers["x-savegate-cache"] for _ in range(2)] == ["bypass"] * 2
    seeded = {**random, "seed": 7, "temperature": 1}
    assert [post(cached, seeded).headers["x-savegate-cache"] for _ in range(2)] == ["miss", "hit"]
    bad = post(cached, body, **{"x-savegate-cache": "always"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_cache_directive"


def test_the_key_is_the_canonical_request(cached: Service, fake_upstream: Service):
    messages = marker()
    body = {"model": "text-basic", "messages": messages, "temperature": 0, "max_tokens": 50}
    assert post(cached, body).headers["x-savegate-cache"] == "miss"
    same = [
        {**body, "user": "someone-else"},
        {**body, "model": "basic-alias"},  # the alias names the same public model
        dict(reversed(list(body.items()))),  # key order is not the request
    ]
    for other in same:
        assert post(cached, other).headers["x-savegate-cache"] == "hit", other
    for other in ({**body, "max_tokens": 51}, {**body, "stop": ["x"]}, {**body, "n": 2}):
        assert post(cached, other).headers["x-savegate-cache"] == "miss", other
    assert upstream_calls(fake_upstream, messages) == 4


def test_equal_numbers_are_one_key(cached: Service, fake_upstream: Service):
    messages = marker()
    body = {"model": "text-basic", "messages": messages, "temperature": 0, "top_p": 1}
    body["presence_penalty"] = 0
    assert post(cached, body).headers["x-savegate-cache"] == "miss"
    floats = {**body, "temperature": 0.0, "top_p": 1.0, "presence_penalty": -0.0}
    assert post(cached, floats).headers["x-savegate-cache"] == "hit"
    exponent = orjson.dumps({**body, "top_p": "ONE"}).replace(b'"ONE"', b"1e0")
    headers = {"Authorization": f"Bearer {cached.key}", "Content-Type": "application/json"}
    answer = httpx.post(cached.base_url + "/chat/completions", content=exponent, headers=headers)
    assert answer.headers["x-savegate-cache"] == "hit"
    assert post(cached, {**body, "top_p": 0.5}).headers["x-savegate-cache"] == "miss"
    assert upstream_calls(fake_upstream, messages) == 2
    # A seed must be an integer, as OpenAI's: `3.0` is refused, not a key of its own.
    assert post(cached, {**body, "seed": 3.0}).status_code == 400


def _stream(service: Service, body: dict) -> tuple[httpx.Headers, bytes]:
    headers = {"Authorization": f"Bearer {service.key}"}
    with httpx.stream(
        "POST", service.base_url + "/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        return response.headers, response.read()


def _same_but_ids(replayed: dict, live: dict) -> bool:
    return {**replayed, "id": live["id"], "created": live["created"]} == live


@pytest.mark.parametrize(
    "name", ["text-basic", "refusal", "tool-call-single", "tool-calls-parallel", "n3-choices"]
)
@pytest.mark.parametrize("include_usage", [False, True])
def test_replayed_stream_follows_the_wire_rules(cached: Service, name: str, include_usage: bool):
    body: dict = {"model": name, "messages": marker(), "temperature": 0, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    live_headers, live = _stream(cached, body)
    replay_headers, replayed = _stream(cached, body)
    assert (live_headers["x-savegate-cache"], replay_headers["x-savegate-cache"]) == ("miss", "hit")
    for header in ("content-type", "cache-control", "x-accel-buffering"):
        assert replay_headers[header] == live_headers[header]
    expected = fixture_events(name)
    if not include_usage:
        expected = [event for event in expected if not is_usage_event(event)]
    assert live == b"".join(expected)  # the miss is relayed untouched
    live_chunks = chat_stream_chunks(live, include_usage)
    chunks = chat_stream_chunks(replayed, include_usage)
    assert chunks[0]["id"] != live_chunks[0]["id"]  # each replay is an answer of its own
    assert chunks[0]["model"] == live_chunks[0]["model"]  # the model that really answered
    events = [b"data: " + event + b"\n\n" for event in (replayed.split(b"data: ")[1:-1])]
    whole = assemble([*events, b"data: [DONE]\n\n"])
    assert _same_but_ids(whole, assemble(fixture_events(name)) | {"usage": whole["usage"]})
    if include_usage:
        assert chunks[-1]["usage"] == live_chunks[-1]["usage"]
    # Where the rules fix a chunk whole, it is the live one's (but for id and created).
    if name == "text-basic":
        for replay_chunk, live_chunk in (
            (chunks[0], live_chunks[0]),
            (chunks[-1], live_chunks[-1]),
        ):
            assert _same_but_ids(replay_chunk, live_chunk)


def test_stream_answer_serves_non_stream_and_back(cached: Service, fake_upstream: Service):
    for first_streams in (True, False):
        messages = marker()
        body = {"model": "tool-call-single", "messages": messages, "temperature": 0}
        if first_streams:
            _, live = _stream(cached, {**body, "stream": True})
            chat_stream_chunks(live, include_usage=False)
            answer = post(cached, body)
            assert answer.headers["x-savegate-cache"] == "hit"
            expected = assemble(fixture_events("tool-call-single"))
            got = answer.json()
            assert got["choices"] == expected["choices"] and got["usage"] == expected["usage"]
        else:
            whole = post(cached, body).json()
            headers, replayed = _stream(cached, {**body, "stream": True})
            assert headers["x-savegate-cache"] == "hit"
            chat_stream_chunks(replayed, include_usage=False)
            events = [b"data: " + e + b"\n\n" for e in replayed.split(b"data: ")[1:-1]]
            rebuilt = assemble([*events, b"data: [DONE]\n\n"])
            assert rebuilt["choices"] == whole["choices"]
        assert upstream_calls(fake_upstream, messages) == 1


def test_sdk_stream_helper_gets_the_same_tool_calls_from_a_hit(cached: Service):
    client = openai.OpenAI(api_key=cached.key, base_url=cached.base_url, max_retries=0)
    body = {"model": "tool-calls-parallel", "messages": marker(), "temperature": 0}
    finals = []
    for _ in range(2):
        with client.chat.completions.stream(**body) as stream:
            finals.append(stream.get_final_completion())
    live, hit = finals
    assert hit.choices[0].message.tool_calls == live.choices[0].message.tool_calls
    assert len(hit.choices[0].message.tool_calls) == 2
    assert hit.choices[0].finish_reason == "tool_calls"


def test_concurrent_identical_misses_make_one_upstream_call(cached: Service, fake_upstream):
    async def fire(stream: bool) -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {cached.key}"}
        body = {"model": "ticks-6", "messages": messages, "temperature": 0, "stream": stream}
        async with httpx.AsyncClient(base_url=cached.base_url, timeout=30) as client:
            return list(
                await asyncio.gather(
                    *(
                        client.post("/chat/completions", json=body, headers=headers)
                        for _ in range(8)
                    )
                )
            )

    for stream in (True, False):
        messages = marker()
        answers = asyncio.run(fire(stream))
        assert upstream_calls(fake_upstream, messages) == 1
        assert {r.status_code for r in answers} == {200}
        states = sorted(r.headers["x-savegate-cache"] for r in answers)
        assert states == ["hit"] * 7 + ["miss"]
        if stream:
            texts = {
                "".join(
                    c["choices"][0]["delta"].get("content") or ""
                    for c in chat_stream_chunks(r.content, include_usage=False)
                )
                for r in answers
            }
        else:
            texts = {r.json()["choices"][0]["message"]["content"] for r in answers}
        assert len(texts) == 1


def test_a_failed_leader_lets_the_waiting_requests_call(cached: Service, fake_upstream: Service):
    async def fire() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {cached.key}"}
        body = {"model": "status-500", "messages": messages, "temperature": 0}
        async with httpx.AsyncClient(base_url=cached.base_url, timeout=30) as client:
            return list(
                await asyncio.gather(
                    *(
                        client.post("/chat/completions", json=body, headers=headers)
                        for _ in range(3)
                    )
                )
            )

    messages = marker()
    answers = asyncio.run(fire())
    assert {r.status_code for r in answers} == {500}
    assert upstream_calls(fake_upstream, messages) >= 3  # each made its own, none cached


def test_anthropic_sdk_stream_from_a_hit(cached: Service):
    client = anthropic.Anthropic(api_key=cached.key, base_url=cached.url, max_retries=0)
    request = {
        "model": "text-basic",
        "max_tokens": 100,
        "extra_body": {"temperature": 0},  # this SDK's signature lacks it
        "messages": [{"role": "user", "content": f"hi {uuid.uuid4().hex}"}],
    }
    finals, kinds = [], []
    for _ in range(2):
        with client.messages.stream(**request) as stream:
            # The wire's events (the SDK adds its own, such as `text`).
            seen = [event.type for event in stream if event.type in ANTHROPIC_EVENTS]
            finals.append(stream.get_final_message())
        kinds.append([k for i, k in enumerate(seen) if i == 0 or k != seen[i - 1]])
    live, hit = finals
    assert hit.content == live.content and hit.stop_reason == live.stop_reason
    assert hit.usage == live.usage and hit.model == live.model
    assert kinds[0] == kinds[1]  # the same event sequence, deltas aside
    whole = client.messages.with_raw_response.create(**request)
    assert whole.headers["x-savegate-cache"] == "hit"
    assert [block.text for block in whole.parse().content] == [b.text for b in live.content]


def test_legacy_completions_embeddings_and_responses_are_cached(cached: Service, fake_upstream):
    messages = marker()
    prompt = messages[0]["content"]
    completion = {"model": "text-basic", "prompt": prompt, "temperature": 0}
    first, second = (
        post(cached, completion, "/completions"),
        post(cached, completion, "/completions"),
    )
    assert [first.headers["x-savegate-cache"], second.headers["x-savegate-cache"]] == [
        "miss",
        "hit",
    ]
    assert second.json()["choices"] == first.json()["choices"]
    assert second.json()["id"].startswith("cmpl-")
    with httpx.stream(
        "POST",
        cached.base_url + "/completions",
        json={**completion, "stream": True},
        headers={"Authorization": f"Bearer {cached.key}"},
    ) as response:
        assert response.headers["x-savegate-cache"] == "hit"
        raw = response.read()
    assert raw.endswith(b"data: [DONE]\n\n")
    texts = [c for c in raw.split(b"\n\n") if c.startswith(b"data: {")]
    assert b"".join(texts).count(b'"object":"text_completion"') == len(texts)

    embedding = {"model": "text-embedding-3-small", "input": prompt}
    vectors = [post(cached, embedding, "/embeddings") for _ in range(2)]
    assert [v.headers["x-savegate-cache"] for v in vectors] == ["miss", "hit"]
    assert vectors[0].json() == vectors[1].json()

    client = openai.OpenAI(api_key=cached.key, base_url=cached.base_url, max_retries=0)
    turn = {"model": "text-basic", "input": prompt, "temperature": 0}
    answers = [client.responses.with_raw_response.create(**turn) for _ in range(2)]
    assert [a.headers["x-savegate-cache"] for a in answers] == ["miss", "hit"]
    assert answers[0].parse().output_text == answers[1].parse().output_text
    with client.responses.stream(**turn) as stream:
        assert stream.get_final_response().output_text == answers[0].parse().output_text
    assert upstream_calls(fake_upstream, messages) == 3  # one a completion, embedding, turn


def test_hits_are_usage_rows_that_save_their_list_cost(cached: Service):
    key = admin(cached, "POST", "/admin/keys", json={"name": "cache-usage"}).json()
    client = openai.OpenAI(api_key=key["secret"], base_url=cached.base_url, max_retries=0)
    body = {"model": "text-basic", "messages": marker(), "temperature": 0}
    for _ in range(3):
        client.chat.completions.create(**body)
    client.chat.completions.create(**body, stream=True).close()
    rows = admin(cached, "GET", "/admin/usage/requests", params={"key_id": key["id"]}).json()
    rows = sorted(rows["data"], key=lambda row: row["id"])
    assert [row["cache_hit"] for row in rows] == [False, True, True, True]
    miss, *hits = rows
    assert miss["cost_usd"] == pytest.approx(miss["list_cost_usd"] * (1 - DISCOUNT))
    assert miss["list_cost_usd"] > 0
    for hit in hits:
        assert hit["cost_usd"] == 0
        assert hit["list_cost_usd"] == miss["list_cost_usd"]
        assert hit["model"] == miss["model"] and hit["provider"] == miss["provider"]
        assert hit["prompt_tokens"] == miss["prompt_tokens"]
        assert hit["saving_cache_usd"] == hit["list_cost_usd"]
        assert hit["saving_discount_usd"] == 0
    assert miss["saving_cache_usd"] == 0
    assert miss["saving_discount_usd"] == pytest.approx(miss["list_cost_usd"] * DISCOUNT)
    assert hits[-1]["stream"] is True
    spend = admin(cached, "GET", "/admin/spend", params={"key_id": key["id"]}).json()
    listed = miss["list_cost_usd"] * 4
    assert round(spend["cost_usd"], 2) == round(miss["cost_usd"], 2)
    assert round(spend["savings_usd"], 2) == round(listed - miss["cost_usd"], 2)
    assert spend["savings_usd"] == pytest.approx(listed - miss["cost_usd"])
    sources = spend["savings_by_source"]
    assert sources["response_cache"] == pytest.approx(miss["list_cost_usd"] * 3)
    assert sum(sources.values()) == pytest.approx(spend["savings_usd"])


def test_a_hit_has_the_access_line_of_an_answer(cached: Service):
    """A hit's line says what answered (the cached model, its provider, its tokens) and
    a replayed stream is a 200, not a request the client left (no attempt ended to say)."""
    key = admin(cached, "POST", "/admin/keys", json={"name": "cache-lines"}).json()
    client = openai.OpenAI(api_key=key["secret"], base_url=cached.base_url, max_retries=0)
    body = {"model": "text-basic", "messages": marker(), "temperature": 0}
    client.chat.completions.create(**body)
    client.chat.completions.create(**body)
    assert "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(**body, stream=True)
        if chunk.choices
    )
    assert cached.logged(f"key_id={key['id']}", 3) == 3
    lines = [line for line in cached.output().splitlines() if f"key_id={key['id']}" in line]
    assert "cache_hit=false" in lines[0]
    for line, stream in zip(lines[1:], ("false", "true"), strict=True):
        assert " 200 " in line and "status=200" in line and f"stream={stream}" in line, line
        assert "model=text-basic" in line and "provider=fake" in line, line
        assert "cache_hit=true" in line and "tokens_out=" in line, line


def test_keys_turn_the_cache_on_or_off_and_hits_count_against_rpm(cached: Service):
    off = admin(cached, "POST", "/admin/keys", json={"name": "no-cache", "cache": False}).json()
    assert off["cache"] is False
    body = {"model": "text-basic", "messages": marker(), "temperature": 0}
    headers = {"Authorization": f"Bearer {off['secret']}"}
    for _ in range(2):
        answer = httpx.post(cached.base_url + "/chat/completions", json=body, headers=headers)
        assert "x-savegate-cache" not in answer.headers
    limited = admin(cached, "POST", "/admin/keys", json={"name": "rpm", "rpm": 2}).json()
    headers = {"Authorization": f"Bearer {limited['secret']}"}
    states = []
    for _ in range(3):
        answer = httpx.post(cached.base_url + "/chat/completions", json=body, headers=headers)
        states.append(answer.headers.get("x-savegate-cache") or str(answer.status_code))
    assert states == ["miss", "hit", "429"]
