"""`/v1/responses` passed through to an upstream that speaks it (`responses: native`):
the request goes out as the client sent it, the events come back as the upstream's bytes,
and the usage in `response.completed` is metered."""

from __future__ import annotations

import time

import httpx
import openai
import orjson
import pytest

from tests.conftest import Service
from tests.fakes import responses as fake
from tests.test_responses_api import NAMESPACE

WEB_SEARCH = {"type": "web_search", "external_web_access": False}


@pytest.fixture(scope="module")
def client(native_gateway: Service) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=native_gateway.key, base_url=native_gateway.base_url, max_retries=0
    )


def last_upstream(fake_upstream: Service) -> dict:
    return httpx.get(fake_upstream.url + "/_log").json()["requests"][-1]


def post(native_gateway: Service, body: dict, key: str | None = None) -> httpx.Response:
    return httpx.post(
        native_gateway.base_url + "/responses",
        content=orjson.dumps(body),
        headers={"Authorization": f"Bearer {key or native_gateway.key}"},
        timeout=30,
    )


def rows(native_gateway: Service, model: str) -> list[dict]:
    headers = {"Authorization": f"Bearer {native_gateway.keys['admin']}"}
    for _ in range(50):
        found = httpx.get(
            native_gateway.url + "/admin/usage/requests", headers=headers, params={"model": model}
        ).json()["data"]
        if found:
            return found
        time.sleep(0.1)
    return []


def test_request_goes_upstream_as_sent(native_gateway: Service, fake_upstream: Service):
    body = {
        "model": "codex-model",
        "input": [{"type": "message", "role": "user", "content": "Hi"}],
        "tools": [NAMESPACE, WEB_SEARCH],
        "include": ["reasoning.encrypted_content"],
        "reasoning": {"summary": "auto"},
        "store": False,
    }
    answer = post(native_gateway, body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == fake.body({**body, "model": "resp-text"}, answer.json()["id"])
    sent = last_upstream(fake_upstream)
    assert sent["path"] == "/v1/responses"
    assert sent["body"] == {**body, "model": "resp-text"}  # only the model renamed


def test_stream_is_the_upstreams_bytes(native_gateway: Service, fake_upstream: Service):
    body = {"model": "resp-split", "input": "Hi", "stream": True, "tools": [WEB_SEARCH]}
    with httpx.stream(
        "POST",
        native_gateway.base_url + "/responses",
        content=orjson.dumps(body),
        headers={"Authorization": f"Bearer {native_gateway.key}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        streamed = b"".join(response.iter_bytes())
    assert last_upstream(fake_upstream)["body"] == body  # no stream_options, no max_tokens
    assert streamed == b"".join(fake.events(body, fake.streamed_id(streamed)))


def test_sdk_stream_keeps_reasoning_and_hosted_tools(client: openai.OpenAI):
    with client.responses.stream(
        model="resp-text",
        input="Hi",
        tools=[WEB_SEARCH],  # type: ignore[list-item]
        include=["reasoning.encrypted_content"],
    ) as stream:
        final = stream.get_final_response()
    assert [item.type for item in final.output] == ["reasoning", "web_search_call", "message"]
    assert final.output[0].encrypted_content == "enc-fake-1"  # type: ignore[union-attr]
    assert final.output_text == fake.ANSWER


@pytest.mark.parametrize("stream", [False, True])
def test_usage_is_metered_from_the_response(native_gateway: Service, stream: bool):
    model = f"resp-metered-{stream}"
    answer = post(native_gateway, {"model": model, "input": "Hi", "stream": stream})
    assert answer.status_code == 200
    (row,) = rows(native_gateway, model)
    assert row["endpoint"] == "responses" and row["stream"] is stream
    assert (row["prompt_tokens"], row["completion_tokens"]) == (21, 9)
    assert (row["cached_tokens"], row["reasoning_tokens"]) == (5, 4)
    assert row["model"] == f"{model}-2025-01-01" and not row["estimated"]


def test_mid_stream_error_ends_with_response_failed(client: openai.OpenAI):
    with client.responses.stream(model="resp-error-after-3", input="x") as stream:
        events = list(stream)
    assert [e.type for e in events[:3]] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
    ]
    assert [e.type for e in events[3:]] == ["error", "response.failed"]
    assert [e.sequence_number for e in events] == list(range(5))
    assert events[-1].response.id == events[0].response.id  # type: ignore[union-attr]


def test_a_limited_key_caps_output_in_the_responses_field(
    native_gateway: Service, fake_upstream: Service
):
    headers = {"Authorization": f"Bearer {native_gateway.keys['admin']}"}
    created = httpx.post(
        native_gateway.url + "/admin/keys",
        headers=headers,
        json={"name": "capped", "monthly_token_quota": 100000},
    )
    assert created.status_code == 201, created.text
    answer = post(
        native_gateway, {"model": "resp-text", "input": "Hi"}, key=created.json()["secret"]
    )
    assert answer.status_code == 200, answer.text
    sent = last_upstream(fake_upstream)["body"]
    assert sent["max_output_tokens"] == 4096 and "max_tokens" not in sent


def test_other_models_still_go_through_chat(client: openai.OpenAI, fake_upstream: Service):
    response = client.responses.create(model="text-basic", input="Weather?")
    assert response.output_text.startswith("I'm unable to provide real-time weather")
    assert last_upstream(fake_upstream)["path"] == "/v1/chat/completions"
