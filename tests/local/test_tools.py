"""Tool calls by constrained decoding: forced, named, auto and legacy, streamed and not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from savegate.core.errors import InvalidRequest
from savegate.providers.local.engine import Finished, Generation
from savegate.providers.local.model import EmbeddedModel
from savegate.providers.local.output import CallArgs, CallName, Text
from savegate.providers.local.sampler import Sampling
from savegate.providers.local.tools import (
    AUTO_OPENING,
    MARKER,
    AutoOutput,
    ToolCallParser,
    describe,
    grammar_for,
    plan_tools,
)
from tests.local.conftest import WEATHER, Loop, chat, message_of, read_all

PARIS = [{"role": "user", "content": "What is the weather in Paris?"}]
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}},
            "required": ["zone"],
        },
    },
}
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in (WEATHER, TIME)}

try:
    import jsonschema
except ImportError:  # not a dependency: fall back to the checks these schemas need
    jsonschema = None

_TYPES: dict[str, Any] = {
    "object": dict,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "array": list,
}


def assert_valid(value: Any, schema: dict[str, Any]) -> None:
    if jsonschema is not None:
        jsonschema.validate(value, schema)
        return
    if "type" in schema:
        assert isinstance(value, _TYPES[schema["type"]]), (value, schema)
    if "enum" in schema:
        assert value in schema["enum"], (value, schema)
    if schema.get("type") == "object":
        properties = schema.get("properties", {})
        assert set(schema.get("required", [])) <= set(value), (value, schema)
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(properties), (value, schema)
        for name, item in value.items():
            if name in properties:
                assert_valid(item, properties[name])


def test_required_tool_call(run: Loop, provider: EmbeddedModel):
    # Greedy, so the 32 tokens suffice (sampled numbers can run to 16 digits).
    body = {"messages": PARIS, "tools": [WEATHER, TIME], "tool_choice": "required"}
    answer = run(provider.complete(chat({**body, "max_tokens": 32, "temperature": 0}), "m")).data
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None and message["role"] == "assistant"
    (call,) = message["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    name = call["function"]["name"]
    assert name in SCHEMAS
    assert_valid(json.loads(call["function"]["arguments"]), SCHEMAS[name])
    assert answer["usage"]["completion_tokens"] <= 32


def test_named_tool_call(run: Loop, provider: EmbeddedModel):
    for choice_of_tool in (
        {"type": "function", "function": {"name": "get_time"}},
        {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [TIME]}},
    ):
        body = {
            "messages": PARIS,
            "tools": [WEATHER, TIME],
            "tool_choice": choice_of_tool,
            "max_tokens": 32,
            "temperature": 0,
        }
        message = message_of(run(provider.complete(chat(body), "m")))
        (call,) = message["tool_calls"]
        assert call["function"]["name"] == "get_time"
        assert_valid(json.loads(call["function"]["arguments"]), SCHEMAS["get_time"])


def test_streamed_tool_call_matches_the_whole_answer(run: Loop, provider: EmbeddedModel):
    body = {
        "messages": PARIS,
        "tools": [WEATHER],
        "tool_choice": "required",
        "max_tokens": 32,
        "temperature": 0,
        "seed": 1,
    }
    whole = message_of(run(provider.complete(chat(body), "m")))["tool_calls"][0]
    chunks = run(read_all(run(provider.stream(chat({**body, "stream": True}), "m"))))
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas[0] == {"role": "assistant", "content": None}
    calls = [delta["tool_calls"] for delta in deltas[1:-1]]
    assert all(len(call) == 1 and call[0]["index"] == 0 for call in calls)
    assert all("function" in call[0] for call in calls)
    first, *rest = (call[0] for call in calls)
    assert first["type"] == "function" and first["id"].startswith("call_")
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    assert len(rest) > 2, "the arguments arrive in pieces, as they are generated"
    assert all(call.keys() == {"index", "function"} for call in rest)
    assert all(call["function"].keys() == {"arguments"} for call in rest)
    arguments = "".join(call["function"]["arguments"] for call in rest)
    assert arguments == whole["function"]["arguments"]
    assert_valid(json.loads(arguments), SCHEMAS["get_weather"])
    assert deltas[-1] == {} and chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_legacy_functions_get_legacy_answers(run: Loop, provider: EmbeddedModel):
    body = {
        "messages": [{"role": "user", "content": "Weather in Rome?"}],
        "functions": [WEATHER["function"]],
        "function_call": {"name": "get_weather"},
        "max_tokens": 32,
        "temperature": 0,
        "seed": 2,
    }
    answer = run(provider.complete(chat(body), "m")).data
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "function_call"
    message = choice["message"]
    assert message["content"] is None and "tool_calls" not in message
    assert message["function_call"]["name"] == "get_weather"
    assert_valid(json.loads(message["function_call"]["arguments"]), SCHEMAS["get_weather"])

    chunks = run(read_all(run(provider.stream(chat({**body, "stream": True}), "m"))))
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas[0] == {"role": "assistant", "content": None}
    assert deltas[1] == {"function_call": {"name": "get_weather", "arguments": ""}}
    assert all(delta["function_call"].keys() == {"arguments"} for delta in deltas[2:-1])
    streamed = "".join(delta["function_call"]["arguments"] for delta in deltas[2:-1])
    assert streamed == message["function_call"]["arguments"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "function_call"


def test_tool_choice_none_answers_in_text(run: Loop, provider: EmbeddedModel):
    body = {"messages": PARIS, "tools": [WEATHER], "tool_choice": "none", "max_tokens": 12}
    choice = run(provider.complete(chat(body), "m")).data["choices"][0]
    assert isinstance(choice["message"]["content"], str) and "tool_calls" not in choice["message"]
    assert choice["finish_reason"] in ("stop", "length")


def test_auto_tool_choice_answering_in_text(run: Loop, provider: EmbeddedModel):
    body = {"messages": PARIS, "tools": [WEATHER], "max_tokens": 12, "temperature": 0, "seed": 4}
    whole = run(provider.complete(chat(body), "m")).data["choices"][0]
    chunks = run(read_all(run(provider.stream(chat({**body, "stream": True}), "m"))))
    # SmolLM2-135M answers this in text; the role chunk waits to know it is text.
    assert whole["message"]["content"] and "tool_calls" not in whole["message"]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == whole["message"]["content"]


def test_auto_mode_switches_to_the_call_grammar(run: Loop, provider: EmbeddedModel):
    """The model never opens with the marker on its own, so the opening is forced here;
    everything after it (the switch, the grammar, the parsing) is the real auto path."""
    plan = plan_tools({"tools": [WEATHER, TIME]})
    assert plan is not None and plan.mode == "auto"
    grammar, switch = grammar_for(plan)
    assert grammar == AUTO_OPENING and switch is not None
    engine = provider.engine
    prompt = engine.tokenize(
        f"<|im_start|>system\n{describe(plan)}<|im_end|>\n"
        "<|im_start|>user\nWhat is the weather in Paris?<|im_end|>\n<|im_start|>assistant\n"
    )

    async def generate() -> list[Any]:
        generation = Generation(
            prompt=prompt,
            max_tokens=40,
            sampling=Sampling(temperature=0, seed=1),
            output=AutoOutput(()),
            grammar='root ::= [ \\n]? "<"',
            switch=switch,
        )
        return [event async for event in engine.submit("key-a", generation).events()]

    events = run(generate())
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.reason == "stop"
    names = [event.name for event in events if isinstance(event, CallName)]
    assert len(names) == 1 and names[0] in SCHEMAS
    arguments = "".join(event.fragment for event in events if isinstance(event, CallArgs))
    assert_valid(json.loads(arguments), SCHEMAS[names[0]])
    assert not any(isinstance(event, Text) for event in events)


# --- the pieces, without the model --------------------------------------------------------


def test_parser_reads_name_then_arguments_in_pieces():
    call = '{"name": "f", "arguments": {"a": "}{\\"", "b": [1, {"c": 2}], "d": "x"}} \n'
    parser = ToolCallParser()
    parts = [part for char in call for part in parser.feed(char)]
    assert parser.done
    assert parts[0] == CallName("f")
    assert all(isinstance(part, CallArgs) for part in parts[1:])
    arguments = "".join(part.fragment for part in parts[1:])
    assert arguments == '{"a": "}{\\"", "b": [1, {"c": 2}], "d": "x"}'


def test_auto_output_decides_on_the_first_visible_character():
    text = AutoOutput(("STOP",))
    assert text.feed("\n ") == []
    assert text.feed("Hello STO") == [Text("\n Hello ")]
    assert text.feed("P and more") == [] and text.done

    call = AutoOutput(())
    assert call.feed(" <tool") == []
    parts = call.feed('_call>{"name": "f", "arguments": {}}')
    assert parts == [CallName("f"), CallArgs("{}")] and call.done
    assert MARKER == "<tool_call>"


def test_tool_choice_errors():
    tools = [WEATHER]
    with pytest.raises(InvalidRequest) as info:
        plan_tools({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "x"}}})
    assert info.value.param == "tool_choice"
    with pytest.raises(InvalidRequest) as info:
        plan_tools({"functions": [WEATHER["function"]], "function_call": {"name": "x"}})
    assert info.value.param == "function_call"
    with pytest.raises(InvalidRequest):
        plan_tools({"tool_choice": "required"})
    with pytest.raises(InvalidRequest):
        plan_tools({"tools": [{"type": "custom", "custom": {"name": "x"}}]})
    assert plan_tools({"messages": []}) is None


def test_schemas_with_refs_become_valid_grammars(provider: EmbeddedModel):
    def tool(name: str, point: dict[str, Any]) -> dict[str, Any]:
        parameters = {
            "type": "object",
            "properties": {"where": {"$ref": "#/$defs/Point"}},
            "required": ["where"],
            "$defs": {"Point": point},
        }
        return {"type": "function", "function": {"name": name, "parameters": parameters}}

    # Two tools whose definitions share a name but not a shape.
    flat = {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}
    named = {"type": "object", "properties": {"label": {"type": "string"}}}
    plan = plan_tools({"tools": [tool("a", flat), tool("b", named)], "tool_choice": "required"})
    grammar, _ = grammar_for(plan)
    assert grammar is not None and provider.engine.grammar_is_valid(grammar)
    assert "tool0-defs-Point" in grammar and "tool1-defs-Point" in grammar
    assert not provider.engine.grammar_is_valid("root ::= nope")
