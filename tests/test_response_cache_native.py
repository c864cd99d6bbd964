"""The response cache in front of the Responses API served natively (`responses: native`):
a hit is the upstream's own response (whole) or its own events (streamed), whichever way
it was first produced; conversation state upstream is never broken by a replay; hits are
usage rows that save their list cost."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest

from tests.conftest import Service, start_gateway, stop
from tests.fakes import responses as fake

PRICE = {"input": 2.0, "cached_input": 0.5, "output": 8.0}  # USD per 1M tokens
# The fake's usage: 21 input tokens (5 of them read from the prompt cache), 9 output.
LIST_COST = (21 * PRICE["input"] + 9 * PRICE["output"]) / 1e6
PAID = ((21 - 5) * PRICE["input"] + 5 * PRICE["cached_input"] + 9 * PRICE["output"]) / 1e6
SYNTHESISED = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.output_item.done",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory, fake_upstream: Service) -> Iterator[Service]:
    os.environ.setdefault("FAKE_UPSTREAM_KEY", "sk-fake-upstream-key")
    config = {
        "local": {"enabled": False},
        "usage": {"flush_seconds": 0.1},
        "cache": {"models": ["resp-*"]},
        "prices": {"resp-text-2025-01-01": PRICE},
        "providers": {
            "native": {
                "base_url": fake_upstream.base_url,
                "api_key_env": "FAKE_UPSTREAM_KEY",
                "responses": "native",
                "models": ["resp-*"],
            }
        },
    }
    service = start_gateway(tmp_path_factory.mktemp("native-cache"), config)
    yield service
    stop(service.process)


def turn(**extra: object) -> dict:
    """A repeatable request no other test sends."""
    return {"model": "resp-text", "input": f"hi {uuid.uuid4().hex}", "temperature": 0, **extra}


def upstream_calls(fake_upstream: Service, body: dict) -> int:
    log = httpx.get(fake_upstream.url + "/_log").json()["requests"]
    return sum(
        1 for r in log if r["path"] == "/v1/responses" and r["body"]["input"] == body["input"]
    )


def post(service: Service, body: dict, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or service.key}"}
    return httpx.post(service.base_url + "/responses", json=body, headers=headers, timeout=30)


def stream(service: Service, body: dict, key: str | None = None) -> tuple[str, bytes]:
    headers = {"Authorization": f"Bearer {key or service.key}"}
    with httpx.stream(
        "POST",
        service.base_url + "/responses",
        json={**body, "stream": True},
        headers=headers,
        timeout=30,
    ) as response:
        assert response.status_code == 200
        return response.headers["x-savegate-cache"], response.read()


def events(raw: bytes) -> list[dict]:
    """The payloads of a Responses stream, each checked against its `event:` line."""
    payloads = []
    for block in raw.strip().split(b"\n\n"):
        name, data = block.split(b"\n")
        payload = orjson.loads(data.removeprefix(b"data: "))
        assert name == b"event: " + payload["type"].encode()
        payloads.append(payload)
    return payloads


def test_a_whole_answer_is_the_upstreams_response_again(native: Service, fake_upstream: Service):
    body = turn()
    first, second = post(native, body), post(native, body)
    assert [first.headers["x-savegate-cache"], second.headers["x-savegate-cache"]] == [
        "miss",
        "hit",
    ]
    assert second.json() == first.json() == fake.body(body, first.json()["id"])  # its id too
    assert upstream_calls(fake_upstream, body) == 1
    assert post(native, {**body, "temperature": 1}).headers["x-savegate-cache"] == "bypass"


def test_a_streamed_answer_is_replayed_byte_for_byte(native: Service, fake_upstream: Service):
    body = turn()
    state, live = stream(native, body)
    made = fake.streamed_id(live)
    assert state == "miss" and live == b"".join(fake.events({**body, "stream": True}, made))
    state, replayed = stream(native, body)
    assert state == "hit" and replayed == live  # the upstream's events, as they came
    whole = post(native, body)
    assert whole.headers["x-savegate-cache"] == "hit"
    assert whole.json() == events(live)[-1]["response"]  # what response.completed said
    client = openai.OpenAI(api_key=native.key, base_url=native.base_url, max_retries=0)
    with client.responses.stream(**body) as sdk:  # type: ignore[call-overload]
        final = sdk.get_final_response()
    assert final.output_text == fake.ANSWER and final.usage.input_tokens == 21  # type: ignore[union-attr]
    assert upstream_calls(fake_upstream, body) == 1


def test_a_whole_answer_streams_as_the_documented_events(native: Service, fake_upstream: Service):
    body = turn()
    answer = post(native, body).json()
    state, replayed = stream(native, body)
    assert state == "hit"
    payloads = events(replayed)
    assert [p["type"] for p in payloads] == SYNTHESISED
    assert [p["sequence_number"] for p in payloads] == list(range(len(SYNTHESISED)))
    assert payloads[0]["response"]["id"] == answer["id"]
    assert payloads[0]["response"]["status"] == "in_progress"
    assert payloads[6]["delta"] == fake.ANSWER
    assert payloads[-1]["response"] == answer
    client = openai.OpenAI(api_key=native.key, base_url=native.base_url, max_retries=0)
    with client.responses.stream(**body) as sdk:  # type: ignore[call-overload]
        final = sdk.get_final_response()
    assert final.output_text == fake.ANSWER
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert upstream_calls(fake_upstream, body) == 1


def test_conversation_state_upstream_is_never_broken(native: Service, fake_upstream: Service):
    # A conversation is appended to by each answer, upstream: a replay would not add it.
    for extra in ({"conversation": "conv_fake"}, {"background": True}):
        body = turn(**extra)
        states = [post(native, body).headers["x-savegate-cache"] for _ in range(2)]
        assert states == ["bypass", "bypass"], extra
        assert upstream_calls(fake_upstream, body) == 2
    # A response is never changed once made: the same turn after it is the same answer,
    # and the replay is that stored response, whose id the next turn may name.
    first = post(native, turn()).json()
    follow = turn(previous_response_id=first["id"])
    answers = [post(native, follow) for _ in range(2)]
    assert [a.headers["x-savegate-cache"] for a in answers] == ["miss", "hit"]
    assert answers[1].json()["id"] == answers[0].json()["id"]
    other = post(native, turn()).json()["id"]
    assert post(native, {**follow, "previous_response_id": other}).headers["x-savegate-cache"] == (
        "miss"
    )
    # What the upstream stored differs with `store`: never one answer for the other.
    unstored = turn(store=False)
    assert post(native, unstored).headers["x-savegate-cache"] == "miss"
    assert post(native, {**unstored, "store": True}).headers["x-savegate-cache"] == "miss"
    assert upstream_calls(fake_upstream, unstored) == 2


def test_hits_are_usage_rows_that_save_their_list_cost(native: Service):
    headers = {"Authorization": f"Bearer {native.keys['admin']}"}
    key = httpx.post(native.url + "/admin/keys", headers=headers, json={"name": "native"}).json()
    body = turn()
    stream(native, body, key["secret"])
    stream(native, body, key["secret"])
    post(native, body, key["secret"])
    rows: list[dict] = []
    for _ in range(50):
        rows = httpx.get(
            native.url + "/admin/usage/requests", headers=headers, params={"key_id": key["id"]}
        ).json()["data"]
        if len(rows) == 3:
            break
        time.sleep(0.1)
    miss, *hits = sorted(rows, key=lambda row: row["id"])
    assert miss["cache_hit"] is False
    assert miss["cost_usd"] == pytest.approx(PAID, abs=1e-12)
    assert miss["list_cost_usd"] == pytest.approx(LIST_COST, abs=1e-12)
    assert [(hit["cache_hit"], hit["stream"]) for hit in hits] == [(True, True), (True, False)]
    for hit in hits:
        assert hit["cost_usd"] == 0 and hit["semantic_cache_hit"] is False
        assert hit["list_cost_usd"] == pytest.approx(LIST_COST, abs=1e-12)
        assert hit["saving_cache_usd"] == pytest.approx(LIST_COST, abs=1e-12)
        assert (hit["prompt_tokens"], hit["completion_tokens"]) == (21, 9)
        assert (hit["cached_tokens"], hit["reasoning_tokens"]) == (5, 4)
        assert hit["model"] == "resp-text-2025-01-01" and hit["endpoint"] == "responses"
