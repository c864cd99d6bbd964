"""Text answers from the real model, in the exact shapes OpenAI clients expect."""

from __future__ import annotations

from savegate.providers.local.model import EmbeddedModel
from tests.local.conftest import COLOURS, Loop, chat, content_of, message_of, read_all

# The prompt exactly as SmolLM2's own chat template writes it (with its default system
# message), to count the prompt tokens independently of the provider's prompt code.
COLOURS_PROMPT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n"
)


def test_non_streaming_text_answer(run: Loop, provider: EmbeddedModel):
    answer = run(provider.complete(chat({"messages": COLOURS, "max_tokens": 16}), "gpt-4")).data
    assert answer["id"].startswith("chatcmpl-")
    assert answer["object"] == "chat.completion"
    assert isinstance(answer["created"], int)
    assert answer["model"] == "SmolLM2-135M-Instruct"
    (choice,) = answer["choices"]
    assert choice["index"] == 0 and choice["logprobs"] is None
    message = choice["message"]
    assert message["role"] == "assistant" and message["refusal"] is None
    assert isinstance(message["content"], str) and message["content"].strip()
    assert "tool_calls" not in message
    assert choice["finish_reason"] in ("stop", "length")
    usage = answer["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 0 < usage["completion_tokens"] <= 16
    assert usage["prompt_tokens_details"]["cached_tokens"] >= 0


def test_usage_counts_the_real_tokens(run: Loop, provider: EmbeddedModel):
    engine = provider.engine
    before = engine.tokens_generated
    answer = run(
        provider.complete(chat({"messages": COLOURS, "max_tokens": 7, "seed": 5}), "m")
    ).data
    usage = answer["usage"]
    assert usage["prompt_tokens"] == len(engine.tokenize(COLOURS_PROMPT))
    assert usage["completion_tokens"] == engine.tokens_generated - before
    assert answer["choices"][0]["finish_reason"] == "length"
    assert usage["completion_tokens"] == 7
    # Seeded requests are evaluated from scratch, so nothing counts as cached.
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0


def test_cached_tokens_report_the_reused_prefix(run: Loop, provider: EmbeddedModel):
    body = {"messages": COLOURS, "max_tokens": 2}
    run(provider.complete(chat(body), "m"))
    again = run(provider.complete(chat(body), "m")).data["usage"]
    # Everything but the last prompt token, which is evaluated again for fresh logits.
    assert again["prompt_tokens_details"]["cached_tokens"] == again["prompt_tokens"] - 1


def test_stream_chunk_order_and_usage(run: Loop, provider: EmbeddedModel):
    body = {
        "messages": COLOURS,
        "max_tokens": 12,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    before = provider.engine.tokens_generated
    chunks = run(read_all(run_stream(run, provider, body)))
    assert len({(c["id"], c["created"], c["model"], c["object"]) for c in chunks}) == 1
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[0]["model"] == "SmolLM2-135M-Instruct"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    middle = chunks[1:-2]
    assert middle and all(c["choices"][0]["delta"].keys() == {"content"} for c in middle)
    finish = chunks[-2]["choices"][0]
    assert finish["delta"] == {} and finish["finish_reason"] in ("stop", "length")
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-2])
    assert all(c["choices"][0]["logprobs"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == provider.engine.tokens_generated - before
    assert usage["completion_tokens"] >= len(middle)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def run_stream(run: Loop, provider: EmbeddedModel, body: dict, key: str = "key-a"):
    return run(provider.stream(chat(body, key), "m"))


def test_no_usage_chunk_unless_asked(run: Loop, provider: EmbeddedModel):
    chunks = run(read_all(run_stream(run, provider, {"messages": COLOURS, "max_tokens": 6})))
    assert all(len(chunk["choices"]) == 1 for chunk in chunks)
    assert all("usage" not in chunk for chunk in chunks)


def test_stream_and_non_stream_agree(run: Loop, provider: EmbeddedModel):
    body = {"messages": COLOURS, "max_tokens": 16, "temperature": 0.8, "seed": 11}
    whole = message_of(run(provider.complete(chat(body), "m")))["content"]
    chunks = run(read_all(run_stream(run, provider, body)))
    assert content_of(chunks) == whole


def test_max_tokens_gives_length(run: Loop, provider: EmbeddedModel):
    for field in ("max_tokens", "max_completion_tokens"):
        body = {
            "messages": [{"role": "user", "content": "Count from 1 to 100."}],
            field: 5,
            "temperature": 0,
        }
        answer = run(provider.complete(chat(body), "m")).data
        assert answer["choices"][0]["finish_reason"] == "length"
        assert answer["usage"]["completion_tokens"] == 5


def test_multibyte_characters_split_across_tokens(run: Loop, provider: EmbeddedModel):
    body = {
        "messages": [{"role": "user", "content": "Write five emojis."}],
        "max_tokens": 12,
        "temperature": 0,
        "seed": 1,
    }
    whole = message_of(run(provider.complete(chat(body), "m")))["content"]
    # Each emoji takes several tokens; none may come out as a replacement character.
    assert any(ord(char) > 0xFFFF for char in whole)
    assert "\ufffd" not in whole
    chunks = run(read_all(run_stream(run, provider, body)))
    assert content_of(chunks) == whole


def test_seed_makes_answers_repeatable(run: Loop, provider: EmbeddedModel):
    def ask(seed: int) -> str:
        body = {"messages": COLOURS, "max_tokens": 24, "temperature": 0.8, "seed": seed}
        return message_of(run(provider.complete(chat(body), "m")))["content"]

    first = ask(1234)
    # Other work in between must not change it (the KV cache then holds other tokens).
    run(provider.complete(chat({"messages": COLOURS, "max_tokens": 3}), "m"))
    assert ask(1234) == first
    assert ask(1234) == first
    assert len({ask(seed) for seed in (1, 2, 3)} | {first}) > 1


def test_without_seed_answers_vary(run: Loop, provider: EmbeddedModel):
    body = {"messages": COLOURS, "max_tokens": 16, "temperature": 1.0}
    answers = {message_of(run(provider.complete(chat(body), "m")))["content"] for _ in range(3)}
    assert len(answers) > 1


def test_temperature_zero_is_greedy(run: Loop, provider: EmbeddedModel):
    body = {"messages": COLOURS, "max_tokens": 12, "temperature": 0}
    answers = {message_of(run(provider.complete(chat(body), "m")))["content"] for _ in range(2)}
    assert len(answers) == 1


def test_stop_strings_are_never_emitted(run: Loop, provider: EmbeddedModel):
    body = {"messages": COLOURS, "max_tokens": 24, "temperature": 0.8, "seed": 99}
    full = message_of(run(provider.complete(chat(body), "m")))["content"]
    assert len(full) > 12
    # A stop string that straddles token boundaries, and a list with a decoy.
    for stop in (full[5:12], [full[5:12], "never-generated-xyz"]):
        answer = run(provider.complete(chat({**body, "stop": stop}), "m")).data
        text = answer["choices"][0]["message"]["content"]
        assert text == full[: full.find(full[5:12])]
        assert answer["choices"][0]["finish_reason"] == "stop"
        chunks = run(read_all(run_stream(run, provider, {**body, "stop": stop})))
        assert content_of(chunks) == text
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_n_choices_non_streaming(run: Loop, provider: EmbeddedModel):
    body = {"messages": COLOURS, "max_tokens": 8, "n": 2, "temperature": 1.0, "seed": 3}
    before = provider.engine.tokens_generated
    answer = run(provider.complete(chat(body), "m")).data
    assert [choice["index"] for choice in answer["choices"]] == [0, 1]
    assert all(choice["message"]["content"] for choice in answer["choices"])
    assert answer["usage"]["completion_tokens"] == provider.engine.tokens_generated - before
    single = run(provider.complete(chat({**body, "n": 1}), "m")).data
    assert answer["usage"]["prompt_tokens"] == single["usage"]["prompt_tokens"]
    # Choice i is generated with seed + i.
    assert single["choices"][0]["message"] == answer["choices"][0]["message"]
    second = run(provider.complete(chat({**body, "n": 1, "seed": 4}), "m")).data
    assert second["choices"][0]["message"] == answer["choices"][1]["message"]


def test_n_choices_streaming(run: Loop, provider: EmbeddedModel):
    body = {
        "messages": COLOURS,
        "max_tokens": 6,
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = run(read_all(run_stream(run, provider, body)))
    assert all(len(chunk["choices"]) == 1 for chunk in chunks[:-1])
    indexes = [chunk["choices"][0]["index"] for chunk in chunks[:-1]]
    assert indexes == sorted(indexes) and set(indexes) == {0, 1}
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks[:-1] if c["choices"][0]["index"] == index]
        assert mine[0]["delta"] == {"role": "assistant", "content": ""}
        assert sum(1 for choice in mine if "role" in choice["delta"]) == 1
        assert mine[-1]["delta"] == {} and mine[-1]["finish_reason"] in ("stop", "length")
        assert sum(1 for choice in mine if choice["finish_reason"]) == 1
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
