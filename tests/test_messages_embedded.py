"""The Anthropic SDK and the Responses API against the embedded model."""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.conftest import Service

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def claude_sdk(gateway: Service) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=gateway.key, base_url=gateway.base_url, max_retries=0)


def test_messages_create(claude_sdk: anthropic.Anthropic):
    message = claude_sdk.messages.create(
        model="claude-local",
        max_tokens=20,
        system="Answer briefly.",
        messages=[{"role": "user", "content": "Name a colour."}],
    )
    assert message.model == "SmolLM2-135M-Instruct"
    assert message.content[0].type == "text" and message.content[0].text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and 0 < message.usage.output_tokens <= 20


def test_messages_stream(claude_sdk: anthropic.Anthropic):
    with claude_sdk.messages.stream(
        model="claude-local",
        max_tokens=20,
        messages=[{"role": "user", "content": "Name a fruit."}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip() and final.content[0].text == text
    assert final.usage.output_tokens > 0


def test_messages_forced_tool(claude_sdk: anthropic.Anthropic):
    with claude_sdk.messages.stream(
        model="claude-local",
        max_tokens=200,  # room for the whole call: a cut one has no arguments
        extra_body={"temperature": 0},  # greedy: the same call every run
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Weather in Lisbon?"}],
    ) as stream:
        final = stream.get_final_message()
    block = next(b for b in final.content if b.type == "tool_use")
    assert block.name == "get_weather" and isinstance(block.input["city"], str)
    assert final.stop_reason == "tool_use"


def test_responses_api(gateway: Service):
    client = openai.OpenAI(api_key=gateway.key, base_url=gateway.base_url, max_retries=0)
    first = client.responses.create(model="gpt-4o", input="Say hi.", max_output_tokens=16)
    assert first.output_text.strip()
    with client.responses.stream(
        model="gpt-4o", input="And again.", max_output_tokens=16, previous_response_id=first.id
    ) as stream:
        events = list(stream)
    # A short limit may end the answer early: OpenAI (and we) then end with
    # response.incomplete, which the SDK's get_final_response() does not accept.
    assert events[-1].type in ("response.completed", "response.incomplete")
    final = events[-1].response
    assert final.output_text.strip() and final.previous_response_id == first.id
