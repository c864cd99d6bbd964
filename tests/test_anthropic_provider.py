"""Anthropic models behind the OpenAI endpoint: a fake Anthropic upstream replays
recorded real streams; the official openai SDK is the client."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import openai
import pytest

from savegate.providers.anthropic.convert import to_anthropic
from tests.conftest import Service, start_gateway, stop
from tests.tools import NO_ARGUMENTS

MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def claude(tmp_path_factory: pytest.TempPathFactory, fake_upstream: Service) -> Iterator[Service]:
    os.environ.setdefault("FAKE_ANTHROPIC_KEY", "sk-ant-fake")
    config = {
        "local": {"enabled": False},
        "providers": {
            "anthropic": {
                "type": "anthropic",
                "base_url": fake_upstream.base_url,
                "api_key_env": "FAKE_ANTHROPIC_KEY",
                "models": ["*"],
            }
        },
    }
    service = start_gateway(tmp_path_factory.mktemp("claude"), config)
    yield service
    stop(service.process)


def client(service: Service) -> openai.OpenAI:
    return openai.OpenAI(api_key=service.key, base_url=service.base_url, max_retries=0)


def last_upstream_request(fake_upstream: Service) -> dict:
    return httpx.get(fake_upstream.url + "/_log").json()["requests"][-1]


def test_text_answer(claude: Service, fake_upstream: Service):
    completion = client(claude).chat.completions.create(
        model="basic_response",
        messages=[{"role": "system", "content": "Be brief."}, *MESSAGES],
        max_tokens=100,
        temperature=1.7,
        stop="END",
    )
    assert completion.id == "chatcmpl-msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK"
    assert completion.model == "claude-3-opus-latest"
    assert completion.choices[0].message.content == "Hello there!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 11 and completion.usage.completion_tokens == 6
    seen = last_upstream_request(fake_upstream)
    assert seen["path"] == "/v1/messages"
    assert seen["headers"]["x-api-key"] == "sk-ant-fake"
    assert seen["headers"]["anthropic-version"] == "2023-06-01"
    assert seen["body"]["system"] == "Be brief."
    assert seen["body"]["temperature"] == 1.0
    assert seen["body"]["stop_sequences"] == ["END"]
    assert seen["body"]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": MESSAGES[0]["content"]}]}
    ]


def test_text_stream_chunks(claude: Service):
    chunks = list(
        client(claude).chat.completions.create(
            model="basic_response",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello there!"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    assert len({c.id for c in chunks}) == 1


def test_tool_call_stream_numbers_calls_not_blocks(claude: Service):
    chunks = list(
        client(claude).chat.completions.create(
            model="tool_use_response",
            messages=MESSAGES,
            stream=True,
            tools=[
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "parameters": {
                            "type": "object",
                            "properties": {"location": {"type": "string"}},
                        },
                    },
                }
            ],
        )
    )
    calls = [call for c in chunks for call in (c.choices[0].delta.tool_calls or [])]
    assert {call.index for call in calls} == {0}
    assert calls[0].id == "toolu_01NRLabsLyVHZPKxbKvkfSMn"
    assert calls[0].function.name == "get_weather"
    assert all(call.function is not None for call in calls)
    assert sum(1 for call in calls if call.id) == 1
    arguments = json.loads("".join(call.function.arguments or "" for call in calls))
    assert arguments == {"location": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_stream_helper_final_completion(claude: Service):
    with client(claude).chat.completions.stream(
        model="tool_use_response",
        messages=MESSAGES,
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
    ) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.role == "assistant"
    assert message.content.startswith("I'll check the current weather")
    (call,) = message.tool_calls
    assert call.id == "toolu_01NRLabsLyVHZPKxbKvkfSMn" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}


def test_no_argument_tool_call_streams_valid_json(claude: Service):
    # Anthropic streams such a call with one `partial_json: ""` and nothing else.
    with client(claude).chat.completions.stream(
        model="tool_use_no_arguments", messages=MESSAGES, tools=[NO_ARGUMENTS]
    ) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert call.function.name == "get_time" and call.function.arguments == "{}"
    assert call.function.parsed_arguments == {}
    assert final.choices[0].finish_reason == "tool_calls"
    whole = client(claude).chat.completions.create(
        model="tool_use_no_arguments", messages=MESSAGES, tools=[NO_ARGUMENTS]
    )
    assert whole.choices[0].message.tool_calls[0].function.arguments == "{}"


def test_no_argument_legacy_function_call_streams_valid_json(claude: Service):
    chunks = list(
        client(claude).chat.completions.create(
            model="tool_use_no_arguments",
            messages=MESSAGES,
            functions=[{"name": "get_time", "parameters": {"type": "object", "properties": {}}}],
            stream=True,
        )
    )
    calls = [c.choices[0].delta.function_call for c in chunks if c.choices[0].delta.function_call]
    assert calls[0].name == "get_time"
    assert "".join(call.arguments or "" for call in calls) == "{}"
    assert chunks[-1].choices[0].finish_reason == "function_call"


def test_non_stream_tool_call(claude: Service):
    completion = client(claude).chat.completions.create(
        model="tool_use_response",
        messages=MESSAGES,
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.name == "get_weather"
    assert completion.usage.prompt_tokens == 377


def test_refusal_maps_to_content_filter(claude: Service):
    completion = client(claude).chat.completions.create(model="refusal_response", messages=MESSAGES)
    assert completion.choices[0].finish_reason == "content_filter"


@pytest.mark.parametrize(
    ("status", "exception", "client_status"),
    [
        (400, openai.BadRequestError, 400),
        (429, openai.RateLimitError, 429),
        (500, openai.InternalServerError, 500),
        (529, openai.InternalServerError, 503),
    ],
)
def test_errors_map_to_openai(claude: Service, status, exception, client_status):
    with pytest.raises(exception) as info:
        client(claude).chat.completions.create(model=f"status-{status}", messages=MESSAGES)
    assert info.value.status_code == client_status


def test_mid_stream_overload_is_an_in_stream_error(claude: Service):
    with pytest.raises(openai.APIError) as info:
        for _ in client(claude).chat.completions.create(
            model="overloaded-mid", messages=MESSAGES, stream=True
        ):
            pass
    assert "Overloaded" in str(info.value)


def test_request_translation():
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "A"},
            {"role": "developer", "content": "B"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a":1}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "g", "arguments": "{}"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "one"},
            {"role": "tool", "tool_call_id": "call_2", "content": "two"},
            {"role": "user", "content": "thanks"},
        ],
        "max_completion_tokens": 50,
        "tools": [
            {
                "type": "function",
                "function": {"name": "f", "description": "d", "parameters": {"type": "object"}},
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
    }
    out = to_anthropic(body, "claude-x")
    assert out["system"] == "A\nB"
    assert out["max_tokens"] == 50
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert out["tools"] == [{"name": "f", "description": "d", "input_schema": {"type": "object"}}]
    user, assistant, results = out["messages"]
    assert user["content"][1]["source"] == {
        "type": "base64",
        "media_type": "image/jpeg",
        "data": "QUJD",
    }
    assert user["content"][2]["source"] == {"type": "url", "url": "https://x/y.png"}
    assert assistant["content"][0] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "f",
        "input": {"a": 1},
    }
    assert [b["type"] for b in results["content"]] == ["tool_result", "tool_result", "text"]
    assert results["content"][1]["tool_use_id"] == "call_2"


def test_n_above_one_is_refused():
    from savegate.core.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        to_anthropic({"messages": [{"role": "user", "content": "x"}], "n": 2}, "m")


def test_legacy_completion_is_translated_through_chat(claude: Service, fake_upstream: Service):
    completion = client(claude).completions.create(model="basic_response", prompt="Hi")
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "Hello there!"
    seen = last_upstream_request(fake_upstream)
    assert seen["body"]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]}
    ]
    assert seen["body"]["max_tokens"] == 16
    chunks = list(
        client(claude).completions.create(model="basic_response", prompt="Hi", stream=True)
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello there!"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_embeddings_on_a_chat_only_provider_is_a_clear_400(claude: Service):
    with pytest.raises(openai.BadRequestError) as info:
        client(claude).embeddings.create(model="basic_response", input="x")
    assert "does not support embeddings" in info.value.message
