"""The Responses API through `client.responses`, translated to chat for the backend."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.conftest import Service

TOOL = {
    "type": "function",
    "name": "GetWeatherArgs",
    "description": "weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def client(relay_gateway: Service) -> openai.OpenAI:
    return openai.OpenAI(api_key=relay_gateway.key, base_url=relay_gateway.base_url, max_retries=0)


def upstream_body(fake_upstream: Service) -> dict:
    return httpx.get(fake_upstream.url + "/_log").json()["requests"][-1]["body"]


def test_create_text(client: openai.OpenAI, fake_upstream: Service):
    response = client.responses.create(
        model="text-basic", input="Weather?", instructions="Be brief.", max_output_tokens=50
    )
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed"
    assert response.output_text.startswith("I'm unable to provide real-time weather")
    assert response.usage.input_tokens == 14 and response.usage.output_tokens == 30
    sent = upstream_body(fake_upstream)
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
    ]
    assert sent["max_tokens"] == 50


def test_stream_events_in_order(client: openai.OpenAI):
    with client.responses.stream(model="text-basic", input="Weather?") as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [event.type for event in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert final.output_text == deltas and deltas.startswith("I'm unable")
    assert final.usage.total_tokens == 44


def test_function_call_stream(client: openai.OpenAI):
    with client.responses.stream(
        model="tool-call-single", input="Weather in SF?", tools=[TOOL]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    (call,) = final.output
    assert call.type == "function_call" and call.name == "GetWeatherArgs"
    assert call.call_id == "call_c91SqDXlYFuETYv8mUHzz6pp"
    assert json.loads(call.arguments)
    assert "response.function_call_arguments.delta" in [e.type for e in events]
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done[0].arguments == call.arguments


def test_previous_response_id_continues_the_conversation(client, fake_upstream: Service):
    first = client.responses.create(model="tool-call-single", input="Weather in SF?", tools=[TOOL])
    call = first.output[0]
    second = client.responses.create(
        model="text-basic",
        previous_response_id=first.id,
        tools=[TOOL],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18C"}],
    )
    assert second.previous_response_id == first.id
    messages = upstream_body(fake_upstream)["messages"]
    assert messages[0] == {"role": "user", "content": "Weather in SF?"}
    assert messages[1]["tool_calls"][0]["id"] == call.call_id
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "18C"}
    third = client.responses.create(
        model="text-basic", previous_response_id=second.id, input="Thanks"
    )
    messages = upstream_body(fake_upstream)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "user"]
    assert third.status == "completed"


def test_get_and_delete(client: openai.OpenAI, relay_gateway: Service):
    created = client.responses.create(model="text-basic", input="Hi")
    fetched = client.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.output_text == created.output_text
    items = client.responses.input_items.list(created.id)
    assert items.data[0].role == "user"
    other = openai.OpenAI(
        api_key=relay_gateway.keys["admin"], base_url=relay_gateway.base_url, max_retries=0
    )
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(created.id)
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_store_false_is_not_kept(client: openai.OpenAI):
    created = client.responses.create(model="text-basic", input="Hi", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_unknown_previous_response_is_404(client: openai.OpenAI):
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="text-basic", input="x", previous_response_id="resp_nope")
    assert info.value.param == "previous_response_id"
    assert info.value.code == "previous_response_not_found"  # as OpenAI says it


NAMESPACE = {
    "type": "namespace",
    "name": "weather",
    "description": "Weather tools.",
    "tools": [
        {
            "type": "function",
            "name": "lookup",
            "description": "Look the weather up.",
            "strict": False,
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ],
}
HOSTED = [
    {"type": "web_search", "external_web_access": False},
    {"type": "file_search", "vector_store_ids": ["vs_1"]},
    {"type": "code_interpreter", "container": {"type": "auto"}},
    {"type": "image_generation"},
    {"type": "mcp", "server_label": "x", "server_url": "https://example.invalid"},
    {
        "type": "computer_use_preview",
        "display_width": 1,
        "display_height": 1,
        "environment": "linux",
    },
]


def test_namespaces_are_flattened_and_hosted_tools_dropped(
    client: openai.OpenAI, fake_upstream: Service, relay_gateway: Service
):
    response = client.responses.create(
        model="tool-call-first", input="Weather in SF?", tools=[NAMESPACE, TOOL, *HOSTED]
    )
    sent = upstream_body(fake_upstream)
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather__lookup",
                "description": "Weather tools.\n\nLook the weather up.",
                "parameters": NAMESPACE["tools"][0]["parameters"],
                "strict": False,
            },
        },
        {
            "type": "function",
            "function": {k: TOOL[k] for k in ("name", "description", "parameters")},
        },
    ]
    (call,) = response.output
    assert call.type == "function_call" and call.name == "lookup"
    assert call.namespace == "weather" and json.loads(call.arguments)
    # The gateway says once per tool type that it dropped one, not once per request.
    client.responses.create(model="text-basic", input="x", tools=HOSTED[:1])
    assert relay_gateway.logged("of type 'web_search' are dropped", 1) == 1


def test_namespaced_call_stream_and_its_history(client: openai.OpenAI, fake_upstream: Service):
    with client.responses.stream(
        model="tool-call-first", input="Weather in SF?", tools=[NAMESPACE]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    added = [e.item for e in events if e.type == "response.output_item.added"]
    assert [(item.namespace, item.name) for item in added] == [("weather", "lookup")]
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done[0].name == "lookup"
    (call,) = final.output
    assert (call.namespace, call.name) == ("weather", "lookup")
    # The client sends the call back in its next turn's input, as Codex does.
    client.responses.create(
        model="text-basic",
        tools=[NAMESPACE],
        store=False,
        input=[
            {"type": "message", "role": "user", "content": "Weather in SF?"},
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "18C"},
        ],
    )
    messages = upstream_body(fake_upstream)["messages"]
    assert messages[1]["tool_calls"][0]["function"]["name"] == "weather__lookup"


def test_only_hosted_tools_sends_no_tools(client: openai.OpenAI, fake_upstream: Service):
    response = client.responses.create(
        model="text-basic", input="x", tools=HOSTED, tool_choice={"type": "web_search"}
    )
    assert response.status == "completed"
    sent = upstream_body(fake_upstream)
    assert "tools" not in sent and "tool_choice" not in sent


def test_mid_stream_failure_ends_with_response_failed(client: openai.OpenAI):
    with client.responses.stream(model="error-after-3", input="x") as stream:
        types = [event.type for event in stream]
    assert types[-2:] == ["error", "response.failed"]
