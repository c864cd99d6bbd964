"""`/v1/completions` and `/v1/embeddings` through an OpenAI-compatible upstream."""

from __future__ import annotations

import base64
import struct

import httpx
import openai
import pytest

from tests.conftest import Service


@pytest.fixture(scope="module")
def client(relay_gateway: Service) -> openai.OpenAI:
    return openai.OpenAI(api_key=relay_gateway.key, base_url=relay_gateway.base_url, max_retries=0)


def test_legacy_completion(client: openai.OpenAI):
    completion = client.completions.create(model="text-basic", prompt="Weather?")
    assert completion.object == "text_completion"
    assert completion.choices[0].text.startswith("I'm unable to provide real-time weather")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == 44


def test_legacy_completion_stream(client: openai.OpenAI):
    chunks = list(
        client.completions.create(
            model="text-basic",
            prompt="Weather?",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text.startswith("I'm unable to provide real-time weather")
    assert chunks[-1].usage.total_tokens == 44


def test_embeddings_float(client: openai.OpenAI, fake_upstream: Service):
    result = client.embeddings.create(
        model="text-embedding-3-small", input=["a", "b"], encoding_format="float", dimensions=4
    )
    assert [item.index for item in result.data] == [0, 1]
    assert all(len(item.embedding) == 4 for item in result.data)
    seen = httpx.get(fake_upstream.url + "/_log").json()["requests"][-1]
    assert seen["path"] == "/v1/embeddings" and seen["body"]["dimensions"] == 4


def test_embeddings_base64_is_the_sdk_default(client: openai.OpenAI, relay_gateway: Service):
    result = client.embeddings.create(model="text-embedding-3-small", input="hello")
    vector = result.data[0].embedding
    assert len(vector) == 8 and abs(sum(v * v for v in vector) - 1) < 1e-5
    raw = httpx.post(
        relay_gateway.base_url + "/embeddings",
        headers={"Authorization": f"Bearer {relay_gateway.key}"},
        json={"model": "e", "input": "hello", "encoding_format": "base64"},
    ).json()
    decoded = struct.unpack("<8f", base64.b64decode(raw["data"][0]["embedding"]))
    assert list(decoded) == pytest.approx(vector)


@pytest.mark.parametrize(
    "body",
    [
        {"input": "x"},
        {"model": "e"},
        {"model": "e", "input": []},
        {"model": "e", "input": "x", "encoding_format": "hex"},
        {"model": "e", "input": [{"a": 1}]},
    ],
)
def test_bad_embedding_requests(relay_gateway: Service, body: dict):
    response = httpx.post(
        relay_gateway.base_url + "/embeddings",
        json=body,
        headers={"Authorization": f"Bearer {relay_gateway.key}"},
    )
    assert response.status_code == 400 and response.json()["error"]["message"]
