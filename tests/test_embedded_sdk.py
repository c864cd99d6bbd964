"""The official openai SDK against the gateway's embedded model: every shape a client uses."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from tests.conftest import Service
from tests.tools import NO_ARGUMENTS

MESSAGES = [{"role": "user", "content": "Name three colours."}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}


@pytest.fixture(scope="module")
def client(gateway: Service) -> openai.OpenAI:
    return openai.OpenAI(api_key=gateway.key, base_url=gateway.base_url, max_retries=0)


def test_non_streaming(client: openai.OpenAI):
    completion = client.chat.completions.create(model="gpt-4", messages=MESSAGES, max_tokens=20)
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "SmolLM2-135M-Instruct"
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens <= 20


def test_streaming_chunk_order_and_usage(gateway: Service):
    body = {
        "model": "gpt-4",
        "messages": MESSAGES,
        "max_tokens": 12,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Authorization": f"Bearer {gateway.key}"}
    with httpx.stream(
        "POST", gateway.base_url + "/chat/completions", json=body, headers=headers, timeout=120
    ) as response:
        raw = response.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-2]]
    assert all(event.startswith("data: {") for event in events[:-2])
    assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0]["delta"] == {}
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] <= 12
    middle = chunks[1:-2]
    assert all(set(c["choices"][0]["delta"]) == {"content"} for c in middle)
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-2])
    assert chunks[-1]["usage"]["completion_tokens"] >= len(middle) > 0


def test_no_usage_chunk_unless_asked(client: openai.OpenAI):
    chunks = list(
        client.chat.completions.create(model="gpt-4", messages=MESSAGES, max_tokens=8, stream=True)
    )
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)


def test_n_choices(client: openai.OpenAI):
    completion = client.chat.completions.create(
        model="gpt-4", messages=MESSAGES, max_tokens=8, n=2, temperature=1.0
    )
    assert [choice.index for choice in completion.choices] == [0, 1]
    seen: dict[int, list] = {0: [], 1: []}
    for chunk in client.chat.completions.create(
        model="gpt-4", messages=MESSAGES, max_tokens=8, n=2, stream=True
    ):
        seen[chunk.choices[0].index].append(chunk.choices[0])
    for index in (0, 1):
        assert seen[index][0].delta.role == "assistant"
        assert sum(1 for c in seen[index] if c.delta.role) == 1
        assert seen[index][-1].finish_reason is not None


def test_stream_helper_final_completion(client: openai.OpenAI):
    # The helper raises on finish_reason "length": stop at the first sentence instead.
    with client.chat.completions.stream(
        model="gpt-4", messages=MESSAGES, max_tokens=64, stop=[".", "\n"], temperature=0, seed=1
    ) as stream:
        text = "".join(event.delta for event in stream if event.type == "content.delta")
        final = stream.get_final_completion()
    assert final.choices[0].message.role == "assistant"
    assert final.choices[0].message.content == text


def test_stream_helper_tool_call_not_duplicated(client: openai.OpenAI):
    with client.chat.completions.stream(
        model="gpt-4",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER],
        tool_choice="required",
        max_tokens=60,
    ) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.role == "assistant"
    assert final.choices[0].finish_reason == "tool_calls"
    (call,) = message.tool_calls
    assert call.id.startswith("call_") and call.id.count("call_") == 1
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments["city"], str) and arguments["unit"] in ("c", "f")


def test_no_argument_tool_call_is_valid_json(client: openai.OpenAI):
    body = {
        "model": "gpt-4",
        "messages": [{"role": "user", "content": "What time is it?"}],
        "tools": [NO_ARGUMENTS],
        "tool_choice": "required",
        "max_tokens": 30,
    }
    with client.chat.completions.stream(**body) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert call.function.name == "get_time" and call.function.parsed_arguments == {}
    whole = client.chat.completions.create(**body)
    assert json.loads(whole.choices[0].message.tool_calls[0].function.arguments) == {}


def test_named_tool_choice_non_streaming(client: openai.OpenAI):
    completion = client.chat.completions.create(
        model="gpt-4",
        messages=[{"role": "user", "content": "Weather in Oslo, in celsius"}],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=200,
        temperature=0,  # greedy: the shape of the answer must not depend on the draw
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    arguments = json.loads(choice.message.tool_calls[0].function.arguments)
    assert set(arguments) == {"city", "unit"}


def test_legacy_functions_get_legacy_answers(client: openai.OpenAI):
    completion = client.chat.completions.create(
        model="gpt-4",
        messages=[{"role": "user", "content": "Weather in Rome?"}],
        functions=[WEATHER["function"]],
        function_call={"name": "get_weather"},
        max_tokens=60,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.function_call.name == "get_weather"
    assert "city" in json.loads(choice.message.function_call.arguments)


def test_async_client_streams(gateway: Service):
    async def run() -> str:
        client = openai.AsyncOpenAI(api_key=gateway.key, base_url=gateway.base_url)
        text = ""
        stream = await client.chat.completions.create(
            model="gpt-4", messages=MESSAGES, max_tokens=10, stream=True
        )
        async for chunk in stream:
            text += chunk.choices[0].delta.content or ""
        completion = await client.chat.completions.create(
            model="gpt-4", messages=MESSAGES, max_tokens=5
        )
        assert completion.choices[0].message.content
        await client.close()
        return text

    assert asyncio.run(run()).strip()


def test_seed_and_stop_are_honoured(client: openai.OpenAI):
    def ask() -> str:
        return (
            client.chat.completions.create(
                model="gpt-4", messages=MESSAGES, max_tokens=16, temperature=0.9, seed=7
            )
            .choices[0]
            .message.content
        )

    assert ask() == ask()
    first_word = ask().split()[0]
    stopped = client.chat.completions.create(
        model="gpt-4",
        messages=MESSAGES,
        max_tokens=16,
        temperature=0.9,
        seed=7,
        stop=[first_word],
    )
    assert first_word not in (stopped.choices[0].message.content or "")
    assert stopped.choices[0].finish_reason == "stop"


def test_errors_raise_the_right_exceptions(client: openai.OpenAI, gateway: Service):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4", messages=[])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="nope", base_url=gateway.base_url).models.list()
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="gpt-4", messages=[{"role": "user", "content": "word " * 9000}]
        )
    assert info.value.code == "context_length_exceeded"


def test_models_endpoint(client: openai.OpenAI):
    models = client.models.list()
    assert [model.id for model in models] == ["SmolLM2-135M-Instruct"]
    assert client.models.retrieve("anything-at-all").id == "anything-at-all"


def test_embeddings_from_the_embedded_model(client: openai.OpenAI):
    default = client.embeddings.create(model="any", input=["a red apple", "a green pear"])
    floats = client.embeddings.create(
        model="any", input=["a red apple", "a green pear"], encoding_format="float"
    )
    assert [len(item.embedding) for item in default.data] == [576, 576]
    for encoded, plain in zip(default.data, floats.data, strict=True):
        assert encoded.embedding == pytest.approx(plain.embedding, abs=1e-6)
    assert default.usage.prompt_tokens > 0
    short = client.embeddings.create(model="any", input="hello", dimensions=32)
    vector = short.data[0].embedding
    assert len(vector) == 32 and sum(v * v for v in vector) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="any", input=[[1, 2, 3]])
