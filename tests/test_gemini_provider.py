"""Gemini models behind the OpenAI endpoint, against a fake Gemini upstream."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import Service, start_gateway, stop
from tests.tools import NO_ARGUMENTS

MESSAGES = [
    {"role": "system", "content": "Be terse."},
    {"role": "user", "content": "Why is the sky blue?"},
]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
        },
    },
}


@pytest.fixture(scope="module")
def gemini(tmp_path_factory: pytest.TempPathFactory, fake_upstream: Service) -> Iterator[Service]:
    os.environ.setdefault("FAKE_GEMINI_KEY", "gm-fake")
    config = {
        "local": {"enabled": False},
        "providers": {
            "google": {
                "type": "gemini",
                "base_url": fake_upstream.base_url + "beta",
                "api_key_env": "FAKE_GEMINI_KEY",
                "models": ["*"],
            }
        },
        "routing": {"backoff_seconds": 0.05},
        # A deployment whose model breaks its tool call, with one that answers behind it.
        "models": {
            "flaky-tools": {
                "deployments": [{"provider": "google", "model": "malformed-call"}],
                "fallbacks": ["function-call"],
            }
        },
    }
    service = start_gateway(tmp_path_factory.mktemp("gemini"), config)
    yield service
    stop(service.process)


def client(service: Service) -> openai.OpenAI:
    return openai.OpenAI(api_key=service.key, base_url=service.base_url, max_retries=0)


def upstream_request(fake_upstream: Service) -> dict:
    return httpx.get(fake_upstream.url + "/_log").json()["requests"][-1]


def test_text(gemini: Service, fake_upstream: Service):
    completion = client(gemini).chat.completions.create(
        model="text", messages=MESSAGES, max_tokens=64, temperature=0.5, stop=["\n\n"]
    )
    assert (
        completion.choices[0].message.content == "The sky is blue because of Rayleigh scattering."
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gemini-2.5-flash"
    assert completion.usage.prompt_tokens == 9
    assert completion.usage.completion_tokens == 36  # thinking tokens are billed as output
    assert completion.usage.completion_tokens_details.reasoning_tokens == 25
    seen = upstream_request(fake_upstream)
    assert seen["path"] == "/v1beta/models/text:generateContent"
    assert seen["headers"]["x-goog-api-key"] == "gm-fake"
    body = seen["body"]
    assert body["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Why is the sky blue?"}]}]
    assert body["generationConfig"] == {
        "temperature": 0.5,
        "maxOutputTokens": 64,
        "stopSequences": ["\n\n"],
    }


def test_text_stream(gemini: Service):
    chunks = list(
        client(gemini).chat.completions.create(
            model="text", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The sky is blue because of Rayleigh scattering."
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 45
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.role) == 1


def test_tool_call(gemini: Service, fake_upstream: Service):
    completion = client(gemini).chat.completions.create(
        model="function-call",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],
        tool_choice="required",
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "c"}
    body = upstream_request(fake_upstream)["body"]
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


def test_parallel_tool_calls_stream_helper(gemini: Service):
    with client(gemini).chat.completions.stream(
        model="parallel-calls",
        messages=[{"role": "user", "content": "Paris and Rome?"}],
        tools=[WEATHER],
    ) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Checking both."
    assert [json.loads(c.function.arguments)["city"] for c in message.tool_calls] == [
        "Paris",
        "Rome",
    ]
    assert len({c.id for c in message.tool_calls}) == 2
    assert final.choices[0].finish_reason == "tool_calls"


def test_tool_results_round_trip(gemini: Service, fake_upstream: Service):
    client(gemini).chat.completions.create(
        model="text",
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        ],
        tools=[WEATHER],
    )
    contents = upstream_request(fake_upstream)["body"]["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}],
    }


def test_safety_block_is_content_filter(gemini: Service):
    chunks = list(
        client(gemini).chat.completions.create(model="safety", messages=MESSAGES, stream=True)
    )
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    completion = client(gemini).chat.completions.create(model="safety", messages=MESSAGES)
    assert completion.choices[0].finish_reason == "content_filter"


def test_prompt_block_is_content_filter(gemini: Service):
    completion = client(gemini).chat.completions.create(model="prompt-blocked", messages=MESSAGES)
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.choices[0].message.content == ""
    chunks = list(
        client(gemini).chat.completions.create(
            model="prompt-blocked", messages=MESSAGES, stream=True
        )
    )
    assert [c.choices[0].finish_reason for c in chunks] == ["content_filter"]


def test_no_argument_tool_call_is_valid_json(gemini: Service):
    with client(gemini).chat.completions.stream(
        model="no-arguments", messages=MESSAGES, tools=[NO_ARGUMENTS]
    ) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert call.function.arguments == "{}" and call.function.parsed_arguments == {}
    whole = client(gemini).chat.completions.create(
        model="no-arguments", messages=MESSAGES, tools=[NO_ARGUMENTS]
    )
    assert whole.choices[0].message.tool_calls[0].function.arguments == "{}"


def test_malformed_function_call_is_an_error_not_an_empty_answer(gemini: Service):
    with pytest.raises(openai.InternalServerError) as info:
        client(gemini).chat.completions.create(
            model="malformed-call", messages=MESSAGES, tools=[WEATHER]
        )
    assert info.value.status_code == 502
    assert info.value.code == "upstream_malformed_function_call"
    assert "print(default_api.get_weather(city='Paris'))" in info.value.message
    # Streamed, it fails before the first byte: the same error status, no 200.
    with pytest.raises(openai.InternalServerError) as info:
        client(gemini).chat.completions.create(
            model="malformed-call", messages=MESSAGES, tools=[WEATHER], stream=True
        )
    assert info.value.code == "upstream_malformed_function_call"


def test_malformed_function_call_after_text_ends_the_stream_with_an_error(gemini: Service):
    stream = client(gemini).chat.completions.create(
        model="text-then-malformed", messages=MESSAGES, tools=[WEATHER], stream=True
    )
    text = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            assert chunk.choices[0].finish_reason is None
            text.append(chunk.choices[0].delta.content or "")
    assert "".join(text) == "Let me look that up."
    assert "call:get_weather{city:Paris" in info.value.message
    assert info.value.code == "upstream_malformed_function_call"


def upstream_models(fake_upstream: Service, count: int) -> list[str]:
    """The models of the last `count` upstream requests, oldest first."""
    requests = httpx.get(fake_upstream.url + "/_log").json()["requests"][-count:]
    return [r["path"].rsplit("/", 1)[1].split(":")[0] for r in requests]


def test_malformed_function_call_is_retried_on_the_next_deployment(
    gemini: Service, fake_upstream: Service
):
    final = client(gemini).chat.completions.create(
        model="flaky-tools", messages=MESSAGES, tools=[WEATHER]
    )
    assert upstream_models(fake_upstream, 2) == ["malformed-call", "function-call"]
    with client(gemini).chat.completions.stream(
        model="flaky-tools", messages=MESSAGES, tools=[WEATHER]
    ) as stream:
        streamed = stream.get_final_completion()
    assert upstream_models(fake_upstream, 2) == ["malformed-call", "function-call"]
    for answer in (final, streamed):
        (call,) = answer.choices[0].message.tool_calls
        assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "c"}


@pytest.mark.parametrize(
    "reason",
    ["UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS", "MALFORMED_RESPONSE", "OTHER"],
)
def test_other_failed_answers_are_errors(gemini: Service, reason: str):
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as info:
            client(gemini).chat.completions.create(
                model=f"finish-{reason}", messages=MESSAGES, stream=stream
            )
        assert info.value.code == f"upstream_{reason.lower()}"
        assert reason in info.value.message


def test_missing_thought_signature_is_not_retried(gemini: Service):
    with pytest.raises(openai.BadRequestError) as info:
        client(gemini).chat.completions.create(
            model="finish-MISSING_THOUGHT_SIGNATURE", messages=MESSAGES
        )
    assert info.value.code == "missing_thought_signature"


def test_output_blocks_are_content_filter(gemini: Service):
    for reason in ("LANGUAGE", "PROHIBITED_CONTENT", "IMAGE_SAFETY"):
        completion = client(gemini).chat.completions.create(
            model=f"finish-{reason}", messages=MESSAGES
        )
        assert completion.choices[0].finish_reason == "content_filter"


def test_no_candidates_and_no_reason_is_an_error(gemini: Service):
    with pytest.raises(openai.InternalServerError) as info:
        client(gemini).chat.completions.create(model="empty", messages=MESSAGES)
    assert info.value.code == "upstream_empty_response"
    with pytest.raises(openai.APIError):
        list(client(gemini).chat.completions.create(model="empty", messages=MESSAGES, stream=True))


def test_stream_cut_before_finish_is_an_error(gemini: Service):
    with pytest.raises(openai.APIError):
        for _ in client(gemini).chat.completions.create(
            model="cut", messages=MESSAGES, stream=True
        ):
            pass


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, openai.BadRequestError),
        (429, openai.RateLimitError),
        (503, openai.InternalServerError),
    ],
)
def test_errors(gemini: Service, status: int, exception):
    with pytest.raises(exception) as info:
        client(gemini).chat.completions.create(model=f"status-{status}", messages=MESSAGES)
    assert f"fake gemini says {status}" in info.value.message


def test_http_images_are_refused_clearly(gemini: Service):
    with pytest.raises(openai.BadRequestError) as info:
        client(gemini).chat.completions.create(
            model="text",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
                    ],
                }
            ],
        )
    assert "data URI" in info.value.message
