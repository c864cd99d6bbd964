"""Prompt building, stop strings and finding the weights: the parts without the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from savegate.providers.local.model import EmbeddedModel
from savegate.providers.local.output import StopFilter
from savegate.providers.local.prompt import PromptBuilder, plain_messages
from savegate.providers.local.weights import WeightsNotFound, find_weights, model_name


def test_messages_become_plain_text():
    messages = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "file", "file": {"filename": "notes.pdf", "file_data": "…"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "look", "arguments": '{"at": "image"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "a cat"}]},
        {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "function", "name": "f", "content": "42"},
    ]
    plain = plain_messages(messages, "TOOLS")
    assert [m["role"] for m in plain] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert plain[0]["content"] == "Be brief.\n\nTOOLS"
    assert plain[1]["content"].startswith("What is this?\n[an image was attached here")
    assert "notes.pdf" in plain[1]["content"]
    assert plain[2]["content"] == '<tool_call>{"name": "look", "arguments": {"at": "image"}}'
    assert plain[3]["content"] == "Result of the tool look:\na cat"
    assert plain[4]["content"] == '<tool_call>{"name": "f", "arguments": {}}'
    assert plain[5]["content"] == "Result of the tool f:\n42"
    assert all(isinstance(m["content"], str) for m in plain)


def test_tool_note_becomes_the_system_message_when_there_is_none():
    plain = plain_messages([{"role": "user", "content": "hi"}], "TOOLS")
    assert plain == [{"role": "system", "content": "TOOLS"}, {"role": "user", "content": "hi"}]


def test_rendered_with_the_models_own_template(provider: EmbeddedModel):
    engine = provider.engine
    assert engine.chat_template and "im_start" in engine.chat_template
    builder = PromptBuilder(
        engine.chat_template, bos_token=engine.bos_token, eos_token=engine.eos_token
    )
    text = builder.render([{"role": "developer", "content": "S"}, {"role": "user", "content": "U"}])
    assert text == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    )


def test_stop_filter_holds_back_possible_beginnings():
    stops = StopFilter(("END", "xyz"))
    assert stops.feed("abc E") == "abc "
    assert stops.feed("N") == ""
    assert stops.feed("x") == "EN"  # "ENx" cannot start "END", but "x" may start "xyz"
    assert stops.feed("yz tail") == "" and stops.done
    assert StopFilter(("b",)).feed("abc") == "a"
    held = StopFilter(("END",))
    assert held.feed("the EN") == "the " and held.flush() == "EN"
    assert StopFilter(()).feed("anything") == "anything"


def test_weights_come_from_the_wheel(tmp_path: Path):
    path = find_weights()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    assert model_name(path) == "SmolLM2-135M-Instruct"
    assert model_name(Path("qwen2.5-0.5b-instruct-q4_k_m.gguf")) == "qwen2.5-0.5b-instruct"
    assert find_weights(str(path)) == path
    with pytest.raises(WeightsNotFound):
        find_weights(str(tmp_path / "missing.gguf"))
