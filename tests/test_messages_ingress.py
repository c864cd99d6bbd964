"""The Anthropic SDK against `/v1/messages`, served by an OpenAI-format backend (the fake
upstream replaying recorded OpenAI streams)."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from tests.conftest import Service

MESSAGES = [{"role": "user", "content": "What is the weather?"}]
TOOL = {
    "name": "GetWeatherArgs",
    "description": "weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(params=["root", "v1"])
def client(request, relay_gateway: Service) -> anthropic.Anthropic:
    # The SDK appends /v1/messages: given our /v1 base URL it calls /v1/v1/messages.
    base = relay_gateway.url if request.param == "root" else relay_gateway.base_url
    return anthropic.Anthropic(api_key=relay_gateway.key, base_url=base, max_retries=0)


def test_create_text(client: anthropic.Anthropic):
    message = client.messages.create(
        model="text-basic", max_tokens=100, messages=MESSAGES, system="Be brief."
    )
    assert message.id.startswith("msg_")
    assert message.role == "assistant" and message.type == "message"
    assert message.content[0].type == "text"
    assert message.content[0].text.startswith("I'm unable to provide real-time weather")
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 14 and message.usage.output_tokens == 30


def test_stream_text(client: anthropic.Anthropic):
    with client.messages.stream(model="text-basic", max_tokens=100, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("I'm unable to provide real-time weather")
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 30


def test_stream_tool_use(client: anthropic.Anthropic):
    with client.messages.stream(
        model="tool-call-single", max_tokens=100, messages=MESSAGES, tools=[TOOL]
    ) as stream:
        final = stream.get_final_message()
    (block,) = final.content
    assert block.type == "tool_use"
    assert block.id == "call_c91SqDXlYFuETYv8mUHzz6pp" and block.name == "GetWeatherArgs"
    assert isinstance(block.input, dict) and block.input
    assert final.stop_reason == "tool_use"


def test_parallel_tool_use(client: anthropic.Anthropic):
    with client.messages.stream(
        model="tool-calls-parallel", max_tokens=100, messages=MESSAGES, tools=[TOOL]
    ) as stream:
        final = stream.get_final_message()
    assert [block.name for block in final.content] == ["GetWeatherArgs", "get_stock_price"]
    assert all(block.input for block in final.content)


def test_create_tool_use_non_stream(client: anthropic.Anthropic):
    message = client.messages.create(
        model="tool-call-single",
        max_tokens=100,
        messages=MESSAGES,
        tools=[TOOL],
        tool_choice={"type": "any"},
    )
    assert message.content[0].type == "tool_use" and message.stop_reason == "tool_use"


def test_stream_has_event_lines(relay_gateway: Service):
    headers = {"x-api-key": relay_gateway.key, "anthropic-version": "2023-06-01"}
    body = {"model": "text-basic", "max_tokens": 50, "messages": MESSAGES, "stream": True}
    raw = httpx.post(relay_gateway.base_url + "/messages", json=body, headers=headers).text
    events = [block.split("\n")[0] for block in raw.strip().split("\n\n")]
    assert events[0] == "event: message_start"
    assert events[-2:] == ["event: message_delta", "event: message_stop"]
    assert "[DONE]" not in raw


def test_errors_in_anthropic_shape(relay_gateway: Service):
    bad = anthropic.Anthropic(
        api_key="sk-savegate-" + "x" * 32, base_url=relay_gateway.url, max_retries=0
    )
    with pytest.raises(anthropic.AuthenticationError) as info:
        bad.messages.create(model="text-basic", max_tokens=10, messages=MESSAGES)
    assert info.value.body["error"]["type"] == "authentication_error"
    good = anthropic.Anthropic(api_key=relay_gateway.key, base_url=relay_gateway.url, max_retries=0)
    with pytest.raises(anthropic.BadRequestError):
        good.messages.create(model="text-basic", max_tokens=10, messages=[])
    with pytest.raises(anthropic.RateLimitError):
        good.messages.create(model="status-429", max_tokens=10, messages=MESSAGES)
    response = httpx.post(
        relay_gateway.url + "/v1/messages",
        headers={"x-api-key": relay_gateway.key},
        json={"model": "m", "messages": MESSAGES},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in response.json()["error"]["message"]


def test_mid_stream_failure_is_an_error_event(client: anthropic.Anthropic):
    with (
        pytest.raises(anthropic.APIStatusError),
        client.messages.stream(model="error-after-3", max_tokens=50, messages=MESSAGES) as stream,
    ):
        for _ in stream:
            pass


def test_count_tokens(client: anthropic.Anthropic):
    count = client.messages.count_tokens(model="text-basic", messages=MESSAGES)
    assert count.input_tokens > 0
