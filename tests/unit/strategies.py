"""Hypothesis strategies for request bodies: any JSON, and bodies shaped almost like real
requests where any value may be swapped for any other JSON, so that the search reaches
deep into the validators and translators instead of failing on the first field."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=6), children, max_size=4),
    ),
    max_leaves=12,
)


def nested(depth: int) -> Any:
    value: Any = "x"
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


deep = st.integers(min_value=1, max_value=300).map(nested)
# Mostly plausible, sometimes anything at all, sometimes nested absurdly deep.
hostile = st.one_of(json_values, json_values, json_values, deep)


def either(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`plausible`, or one time in 16 any JSON: rare enough that a body with a dozen
    fields is often valid throughout and reaches the translators."""
    return st.integers(0, 15).flatmap(lambda roll: hostile if roll == 0 else plausible)


def shaped(
    required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[Any]:
    """An object with these keys, any value possibly replaced; or, rarely, anything."""
    return either(
        st.fixed_dictionaries(
            {k: either(v) for k, v in required.items()},
            optional={k: either(v) for k, v in optional.items()},
        )
    )


words = st.text(max_size=12)
names = st.sampled_from(["get_weather", "lookup", "f"])
arguments = st.sampled_from(['{"city": "Paris"}', "{}", "not json", ""])
schema = st.just({"type": "object", "properties": {"city": {"type": "string"}}})
metadata = st.dictionaries(st.text(max_size=70), st.text(max_size=20), max_size=17)
numbers = st.one_of(st.integers(0, 100), st.integers(-3, 200), st.floats(0, 1), st.floats(-3, 3))


def _lists(element: st.SearchStrategy[Any], max_size: int = 3) -> st.SearchStrategy[Any]:
    return st.lists(element, max_size=max_size)


# --- chat completions ---------------------------------------------------------------------

chat_parts = st.one_of(
    shaped({"type": st.just("text"), "text": words}, {}),
    shaped({"type": st.just("refusal"), "refusal": words}, {}),
    shaped(
        {"type": st.just("image_url")},
        {
            "image_url": st.one_of(
                st.fixed_dictionaries(
                    {"url": st.sampled_from(["data:image/png;base64,AA", "https://x/y.png"])},
                    optional={"detail": st.just("low")},
                ),
                words,
            )
        },
    ),
    shaped({"type": st.just("input_audio")}, {"input_audio": st.just({"data": "AA"})}),
)
content = st.one_of(words, _lists(chat_parts))
function_call = shaped({"name": names, "arguments": arguments}, {})
tool_calls = _lists(
    shaped({"id": words, "type": st.just("function"), "function": function_call}, {})
)
chat_messages = st.one_of(
    shaped(
        {"role": st.sampled_from(["system", "developer", "user"]), "content": content},
        {"name": names},
    ),
    shaped(
        {"role": st.just("assistant")},
        {
            "content": st.one_of(content, st.none()),
            "tool_calls": tool_calls,
            "function_call": function_call,
        },
    ),
    shaped({"role": st.just("tool"), "tool_call_id": words, "content": content}, {}),
    shaped({"role": st.just("function"), "name": names, "content": content}, {}),
)
chat_tools = _lists(
    shaped(
        {"type": st.just("function")},
        {"function": shaped({"name": names}, {"description": words, "parameters": schema})},
    )
)
tool_choice = st.one_of(
    st.sampled_from(["none", "auto", "required", "any"]),
    shaped({"type": st.just("function")}, {"function": shaped({"name": names}, {}), "name": names}),
)
chat_bodies = shaped(
    {
        "model": st.sampled_from(["m", "gpt-4o"]),
        "messages": st.lists(chat_messages, min_size=1, max_size=4),
    },
    {
        "stream": st.booleans(),
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
        "temperature": numbers,
        "top_p": numbers,
        "n": numbers,
        "max_tokens": numbers,
        "max_completion_tokens": numbers,
        "stop": st.one_of(words, _lists(words, 5)),
        "tools": chat_tools,
        "functions": _lists(shaped({"name": names}, {"parameters": schema})),
        "tool_choice": tool_choice,
        "function_call": st.one_of(st.sampled_from(["none", "auto"]), shaped({"name": names}, {})),
        "parallel_tool_calls": st.booleans(),
        "response_format": shaped(
            {"type": st.sampled_from(["text", "json_object", "json_schema"])},
            {"json_schema": shaped({"name": names}, {"schema": schema})},
        ),
        "user": words,
        "metadata": metadata,
        "seed": numbers,
    },
)
prompts = st.one_of(
    words, _lists(words), _lists(st.integers(0, 100)), _lists(_lists(st.integers(0, 9)))
)
completion_bodies = shaped(
    {"model": st.just("m"), "prompt": prompts},
    {
        "stream": st.booleans(),
        "n": numbers,
        "max_tokens": numbers,
        "best_of": numbers,
        "echo": st.booleans(),
    },
)
embedding_bodies = shaped(
    {"model": st.just("m"), "input": prompts},
    {"encoding_format": st.sampled_from(["float", "base64", "hex"]), "dimensions": numbers},
)

# --- Responses ----------------------------------------------------------------------------

response_parts = shaped(
    {
        "type": st.sampled_from(
            ["input_text", "output_text", "input_image", "refusal", "input_file"]
        )
    },
    {
        "text": words,
        "image_url": words,
        "detail": st.sampled_from(["auto", "low", "max"]),
        "refusal": words,
    },
)
response_items = st.one_of(
    shaped(
        {"role": st.sampled_from(["user", "system", "developer", "assistant", "tool"])},
        {"type": st.just("message"), "content": st.one_of(words, _lists(response_parts))},
    ),
    shaped(
        {"type": st.just("function_call"), "call_id": words, "name": names, "arguments": arguments},
        {"id": words},
    ),
    shaped(
        {"type": st.just("function_call_output"), "call_id": words},
        {"output": st.one_of(words, _lists(response_parts))},
    ),
    shaped({"type": st.sampled_from(["reasoning", "web_search_call", "item_reference"])}, {}),
)
response_tools = _lists(
    shaped(
        {"type": st.sampled_from(["function", "function", "web_search"])},
        {"name": names, "description": words, "parameters": schema, "strict": st.booleans()},
    )
)
response_bodies = shaped(
    {"model": st.just("m"), "input": st.one_of(words, _lists(response_items, 4))},
    {
        "instructions": words,
        "temperature": numbers,
        "top_p": numbers,
        "max_output_tokens": numbers,
        "stream": st.booleans(),
        "store": st.booleans(),
        "parallel_tool_calls": st.booleans(),
        "user": words,
        "metadata": metadata,
        "tools": response_tools,
        "tool_choice": st.one_of(
            st.sampled_from(["none", "auto", "required"]),
            shaped({"type": st.sampled_from(["function", "file_search"])}, {"name": names}),
        ),
        "text": shaped(
            {},
            {
                "format": shaped(
                    {"type": st.sampled_from(["text", "json_object", "json_schema"])},
                    {"name": names, "schema": schema, "strict": st.booleans()},
                )
            },
        ),
        "previous_response_id": words,
        "reasoning": shaped({}, {"effort": words}),
    },
)

# --- Anthropic Messages -------------------------------------------------------------------

image_sources = st.one_of(
    shaped({"type": st.just("base64"), "media_type": st.just("image/png"), "data": words}, {}),
    shaped({"type": st.just("url"), "url": words}, {}),
)
text_blocks = shaped({"type": st.just("text"), "text": words}, {})
user_blocks = st.one_of(
    text_blocks,
    shaped({"type": st.just("image"), "source": image_sources}, {}),
    shaped(
        {"type": st.just("tool_result"), "tool_use_id": words},
        {"content": st.one_of(words, _lists(text_blocks)), "is_error": st.booleans()},
    ),
    shaped({"type": st.just("document")}, {}),
)
assistant_blocks = st.one_of(
    text_blocks,
    shaped(
        {"type": st.just("tool_use"), "id": words, "name": names, "input": st.just({"city": "x"})},
        {},
    ),
    shaped({"type": st.just("thinking"), "thinking": words}, {}),
)
anthropic_messages = st.one_of(
    shaped({"role": st.just("user"), "content": st.one_of(words, _lists(user_blocks))}, {}),
    shaped(
        {"role": st.just("assistant"), "content": st.one_of(words, _lists(assistant_blocks))}, {}
    ),
    shaped({"role": st.just("user"), "content": words}, {}),
)
anthropic_bodies = shaped(
    {
        "model": st.just("m"),
        "max_tokens": st.one_of(st.integers(1, 100), numbers),
        "messages": st.lists(anthropic_messages, min_size=1, max_size=4),
    },
    {
        "system": st.one_of(words, _lists(text_blocks)),
        "temperature": numbers,
        "top_p": numbers,
        "top_k": st.integers(-1, 50),
        "stop_sequences": _lists(words, 5),
        "stream": st.booleans(),
        "tools": _lists(shaped({"name": names}, {"description": words, "input_schema": schema})),
        "tool_choice": shaped(
            {"type": st.sampled_from(["auto", "any", "tool", "none"])},
            {"name": names, "disable_parallel_tool_use": st.booleans()},
        ),
        "metadata": shaped({}, {"user_id": words}),
    },
)
