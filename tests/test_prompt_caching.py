"""Prompt caching: Anthropic's `cache_control` passed through (OpenAI chat and `/v1/messages`),
automatic breakpoints, and cache writes and reads priced and counted as savings. The fake
Anthropic upstream replays recorded streams with the usage Anthropic's prompt cache would
report for the marks it received; the openai and anthropic SDKs are the clients."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from savegate.core.prices import ModelPrice
from savegate.core.usage import TokenCounts
from savegate.providers.gemini.convert import usage_of as gemini_usage
from tests.conftest import Service, start_gateway, stop

EPHEMERAL = {"type": "ephemeral"}
# basic_response answers as claude-3-opus-latest, with 11 uncached input and 6 output tokens.
FRESH, OUTPUT = 11, 6
OPUS = {"input": 15.0, "cached": 1.5, "write_5m": 18.75, "write_1h": 30.0, "output": 75.0}
PAID_SHARE = 0.8  # the anthropic provider's discount is 0.2
FLASH = {"input": 0.30, "cached_input": 0.075, "output": 2.50}  # USD per 1M tokens


def opus(read: int = 0, write_5m: int = 0, write_1h: int = 0, *, uncached: bool = False) -> float:
    """USD at Opus 3's list price for basic_response's answer with these cache tokens."""
    read_price = OPUS["input"] if uncached else OPUS["cached"]
    return (
        FRESH * OPUS["input"]
        + read * read_price
        + write_5m * OPUS["write_5m"]
        + write_1h * OPUS["write_1h"]
        + OUTPUT * OPUS["output"]
    ) / 1e6


def long_text(words: int = 900) -> str:
    """A prompt over Anthropic's minimum cacheable length, unique to the test."""
    return f"[{uuid.uuid4()}] " + "Answer carefully and cite sources. " * (words // 5)


def prefix_tokens(*blocks: Any) -> int:
    """The fake's count of a cached prefix: its blocks' JSON bytes / 4."""
    return len(orjson.dumps(list(blocks))) // 4


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory, fake_upstream: Service) -> Iterator[Service]:
    os.environ.setdefault("FAKE_ANTHROPIC_KEY", "sk-ant-fake")
    os.environ.setdefault("FAKE_GEMINI_KEY", "gm-fake")
    config = {
        "local": {"enabled": False},
        "usage": {"flush_seconds": 0.1},
        "prices": {"gemini-2.5-flash": FLASH},
        "providers": {
            "google": {
                "type": "gemini",
                "base_url": fake_upstream.base_url + "beta",
                "api_key_env": "FAKE_GEMINI_KEY",
                "models": ["text@cached-6"],
            },
            "openai": {
                "base_url": fake_upstream.base_url,
                "models": ["text-basic", "text-basic@cached-10"],
            },
            "auto": {
                "type": "anthropic",
                "base_url": fake_upstream.base_url,
                "api_key_env": "FAKE_ANTHROPIC_KEY",
                "prompt_cache": "auto",
                "discount": 0.2,
                "models": [{"name": "auto-basic", "upstream": "basic_response"}],
            },
            "anthropic": {
                "type": "anthropic",
                "base_url": fake_upstream.base_url,
                "api_key_env": "FAKE_ANTHROPIC_KEY",
                "discount": 0.2,
                "models": ["*"],
            },
        },
        "models": {
            "grouped-auto": {
                "deployments": [{"provider": "anthropic", "model": "basic_response"}],
                "prompt_cache": "auto",
            }
        },
    }
    service = start_gateway(tmp_path_factory.mktemp("prompt-cache"), config)
    yield service
    stop(service.process)


def admin(service: Service, path: str, **params: Any) -> Any:
    headers = {"Authorization": f"Bearer {service.keys['admin']}"}
    response = httpx.get(service.url + path, headers=headers, params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def new_key(service: Service) -> tuple[str, str]:
    headers = {"Authorization": f"Bearer {service.keys['admin']}"}
    made = httpx.post(service.url + "/admin/keys", headers=headers, json={"name": "cache"})
    assert made.status_code == 201, made.text
    return made.json()["id"], made.json()["secret"]


def rows(service: Service, key_id: str) -> list[dict[str, Any]]:
    """The key's usage rows, oldest first."""
    return list(reversed(admin(service, "/admin/usage/requests", key_id=key_id)["data"]))


def upstream_body(fake: Service) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(fake.url + "/_log").json()["requests"][-1]["body"]
    return body


def assert_priced(row: dict[str, Any], listed_tokens: float, paid_list: float) -> None:
    """`row` cost what it should: `paid_list` (its list cost with its cache prices) less
    the discount, against a baseline of `listed_tokens` (its reads as plain input)."""
    assert row["cost_usd"] == pytest.approx(paid_list * PAID_SHARE, abs=1e-12)
    assert row["list_cost_usd"] == pytest.approx(listed_tokens, abs=1e-12)
    assert row["saving_discount_usd"] == pytest.approx(paid_list * (1 - PAID_SHARE), abs=1e-12)
    assert row["saving_prompt_cache_usd"] == pytest.approx(listed_tokens - paid_list, abs=1e-12)
    assert row["saving_route_usd"] == 0
    saved = row["saving_discount_usd"] + row["saving_prompt_cache_usd"]
    assert round(row["cost_usd"] + saved, 10) == round(row["list_cost_usd"], 10)


def test_chat_breakpoints_are_written_then_read_and_priced(cached: Service, fake_upstream: Service):
    key_id, secret = new_key(cached)
    client = openai.OpenAI(api_key=secret, base_url=cached.base_url, max_retries=0)
    system = {"type": "text", "text": long_text(), "cache_control": EPHEMERAL}
    messages = [
        {"role": "system", "content": [system]},
        {"role": "user", "content": "What is in the document?"},
    ]
    written = prefix_tokens({"type": "text", "text": system["text"]})

    first = client.chat.completions.create(model="basic_response", messages=messages)
    assert upstream_body(fake_upstream)["system"] == [system]
    assert first.usage.prompt_tokens == FRESH + written
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert first.usage.prompt_tokens_details.model_extra["cache_creation_tokens"] == written

    second = client.chat.completions.create(model="basic_response", messages=messages)
    assert second.usage.prompt_tokens == FRESH + written  # every input token, cached or not
    assert second.usage.prompt_tokens_details.cached_tokens == written

    write_row, read_row = rows(cached, key_id)
    assert (write_row["cached_tokens"], write_row["cache_write_tokens"]) == (0, written)
    assert_priced(write_row, opus(write_5m=written), opus(write_5m=written))
    assert (read_row["cached_tokens"], read_row["cache_write_tokens"]) == (written, 0)
    assert_priced(read_row, opus(read=written, uncached=True), opus(read=written))
    # Reading saved 90 % of the list price of those tokens as plain input.
    assert read_row["saving_prompt_cache_usd"] == pytest.approx(written * 13.5 / 1e6)


def test_an_hour_long_breakpoint_on_a_streamed_message_is_priced_at_2x(
    cached: Service, fake_upstream: Service
):
    key_id, secret = new_key(cached)
    client = openai.OpenAI(api_key=secret, base_url=cached.base_url, max_retries=0)
    mark = {"type": "ephemeral", "ttl": "1h"}
    text = long_text()
    chunks = list(
        client.chat.completions.create(
            model="basic_response",
            messages=[{"role": "user", "content": text, "cache_control": mark}],  # type: ignore[misc]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    # A mark on a whole message goes on its last block, where Anthropic takes it.
    seen = upstream_body(fake_upstream)["messages"]
    assert seen == [
        {"role": "user", "content": [{"type": "text", "text": text, "cache_control": mark}]}
    ]
    written = prefix_tokens({"type": "text", "text": text})
    assert chunks[-1].usage.prompt_tokens == FRESH + written
    details = chunks[-1].usage.prompt_tokens_details.model_extra
    assert details["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": written,
    }
    (row,) = rows(cached, key_id)
    assert row["stream"] and row["cache_write_tokens"] == written
    assert_priced(row, opus(write_1h=written), opus(write_1h=written))


def test_messages_ingress_keeps_every_breakpoint_and_answers_anthropic_usage(
    cached: Service, fake_upstream: Service
):
    key_id, secret = new_key(cached)
    client = anthropic.Anthropic(api_key=secret, base_url=cached.url, max_retries=0)
    tool = {
        "name": "lookup",
        "description": "Look a term up.",
        "input_schema": {"type": "object", "properties": {"term": {"type": "string"}}},
        "cache_control": EPHEMERAL,
    }
    document = long_text()
    request: dict[str, Any] = {
        "model": "basic_response",
        "max_tokens": 100,
        "tools": [tool],
        "system": [
            {"type": "text", "text": "You answer from the document."},
            {"type": "text", "text": document, "cache_control": EPHEMERAL},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Summarise it.", "cache_control": EPHEMERAL},
                ],
            }
        ],
    }
    message = client.messages.create(**request)
    seen = upstream_body(fake_upstream)
    assert seen["system"] == request["system"]
    assert seen["tools"][0]["cache_control"] == EPHEMERAL
    assert seen["messages"][0]["content"] == request["messages"][0]["content"]
    bare_tool = {k: v for k, v in seen["tools"][0].items() if k != "cache_control"}
    system = [{"type": "text", "text": b["text"]} for b in request["system"]]
    turn = {"type": "text", "text": "Summarise it."}
    whole = prefix_tokens(bare_tool, *system, turn)
    # Too short alone, the tool list caches nothing; the system and message marks do.
    assert prefix_tokens(bare_tool) < 1024
    assert message.usage.cache_creation_input_tokens == whole
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.input_tokens == FRESH

    with client.messages.stream(**request) as stream:
        final = stream.get_final_message()
    assert final.usage.cache_read_input_tokens == whole
    assert final.usage.cache_creation_input_tokens == 0
    assert final.usage.input_tokens == FRESH
    write_row, read_row = rows(cached, key_id)
    assert write_row["endpoint"] == read_row["endpoint"] == "chat"
    assert_priced(write_row, opus(write_5m=whole), opus(write_5m=whole))
    assert_priced(read_row, opus(read=whole, uncached=True), opus(read=whole))


def test_messages_ingress_drops_breakpoints_for_an_openai_upstream(
    cached: Service, fake_upstream: Service
):
    client = anthropic.Anthropic(api_key=cached.key, base_url=cached.url, max_retries=0)
    message = client.messages.create(
        model="text-basic",
        max_tokens=100,
        system=[{"type": "text", "text": "Be brief.", "cache_control": EPHEMERAL}],
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "cache_control": EPHEMERAL}],
            }
        ],
    )
    assert message.content[0].text
    log = httpx.get(fake_upstream.url + "/_log").json()["requests"][-1]
    assert log["path"] == "/v1/chat/completions" and "cache_control" not in log["raw"]
    assert log["body"]["messages"][0]["content"] == [{"type": "text", "text": "Be brief."}]


def test_a_bad_breakpoint_is_a_400_naming_it(cached: Service):
    response = httpx.post(
        cached.url + "/v1/messages",
        headers={"x-api-key": cached.key},
        json={
            "model": "basic_response",
            "max_tokens": 10,
            "system": [{"type": "text", "text": "x", "cache_control": {"type": "forever"}}],
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert response.status_code == 400
    assert "system.0.cache_control.type" in response.text


@pytest.mark.parametrize("model", ["auto-basic", "grouped-auto"])
def test_auto_marks_a_long_system_prompt_and_tool_list(
    cached: Service, fake_upstream: Service, model: str
):
    client = openai.OpenAI(api_key=cached.key, base_url=cached.base_url, max_retries=0)
    tool = {
        "type": "function",
        "function": {"name": "search", "description": long_text(), "parameters": {}},
    }
    system = long_text()
    client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": "hi"}],
        tools=[tool],
    )
    seen = upstream_body(fake_upstream)
    assert seen["system"] == [{"type": "text", "text": system, "cache_control": EPHEMERAL}]
    assert seen["tools"][-1]["cache_control"] == EPHEMERAL

    # Short prompts are left alone: Anthropic would not cache them.
    client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
    )
    assert b"cache_control" not in orjson.dumps(upstream_body(fake_upstream))


def text(value: str, **mark: Any) -> dict[str, Any]:
    return {"type": "text", "text": value, **mark}


def marks(body: dict[str, Any]) -> int:
    return orjson.dumps(body.get("messages")).count(b"cache_control")


def test_auto_marks_the_last_turn_of_a_long_conversation(cached: Service, fake_upstream: Service):
    client = openai.OpenAI(api_key=cached.key, base_url=cached.base_url, max_retries=0)
    document, question = long_text(), "What does it say first?"
    turns: list[dict[str, Any]] = [
        {"role": "user", "content": document},
        {"role": "assistant", "content": "Read it."},
        {"role": "user", "content": question},
    ]
    first = client.chat.completions.create(model="auto-basic", messages=turns)
    seen = upstream_body(fake_upstream)
    assert seen["messages"][-1]["content"] == [text(question, cache_control=EPHEMERAL)]
    assert marks(seen) == 1  # only the last turn
    written = prefix_tokens(text(document), text("Read it."), text(question))
    assert first.usage.prompt_tokens_details.model_extra["cache_creation_tokens"] == written

    # The next turn reads the conversation so far and writes only what it adds.
    turns += [{"role": "assistant", "content": "Caching."}, {"role": "user", "content": "And?"}]
    second = client.chat.completions.create(model="auto-basic", messages=turns)
    seen = upstream_body(fake_upstream)
    assert seen["messages"][-1]["content"] == [text("And?", cache_control=EPHEMERAL)]
    assert marks(seen) == 1
    whole = prefix_tokens(*(text(turn["content"]) for turn in turns))
    details = second.usage.prompt_tokens_details
    assert (details.cached_tokens, details.model_extra["cache_creation_tokens"]) == (
        written,
        whole - written,
    )

    # With a long system prompt and tool list too: three marks, within Anthropic's four.
    tool = {"type": "function", "function": {"name": "f", "description": long_text()}}
    system = {"role": "system", "content": long_text()}
    client.chat.completions.create(model="auto-basic", messages=[system, *turns], tools=[tool])
    seen = upstream_body(fake_upstream)
    assert seen["system"][-1]["cache_control"] == seen["tools"][-1]["cache_control"] == EPHEMERAL
    assert seen["messages"][-1]["content"][-1]["cache_control"] == EPHEMERAL

    # No mark for one turn alone, a short conversation, or a conversation the client marks.
    short = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}]
    marked = {"role": "user", "content": [text(document, cache_control=EPHEMERAL)]}
    for messages in (turns[:1], [*short, turns[-1]], [marked, *turns[1:]]):
        client.chat.completions.create(model="auto-basic", messages=messages)
        assert marks(upstream_body(fake_upstream)) == marks({"messages": messages})


def test_auto_respects_the_four_breakpoints_a_client_already_set(
    cached: Service, fake_upstream: Service
):
    client = openai.OpenAI(api_key=cached.key, base_url=cached.base_url, max_retries=0)
    parts = [{"type": "text", "text": f"part {i}", "cache_control": EPHEMERAL} for i in range(4)]
    answer = client.chat.completions.create(
        model="auto-basic",
        messages=[{"role": "system", "content": long_text()}, {"role": "user", "content": parts}],
    )
    assert answer.choices[0].message.content  # a fifth mark would have been a 400
    seen = upstream_body(fake_upstream)
    assert isinstance(seen["system"], str)
    assert seen["messages"][0]["content"] == parts


def test_too_many_client_breakpoints_are_anthropics_400(cached: Service):
    client = openai.OpenAI(api_key=cached.key, base_url=cached.base_url, max_retries=0)
    parts = [{"type": "text", "text": f"part {i}", "cache_control": EPHEMERAL} for i in range(5)]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="basic_response", messages=[{"role": "user", "content": parts}]
        )
    assert "A maximum of 4 blocks with cache_control" in str(refused.value)


def test_openai_cached_tokens_are_priced_as_cached_input(cached: Service):
    key_id, secret = new_key(cached)
    client = openai.OpenAI(api_key=secret, base_url=cached.base_url, max_retries=0)
    answer = client.chat.completions.create(
        model="text-basic@cached-10", messages=[{"role": "user", "content": "hello"}]
    )
    assert answer.usage.prompt_tokens_details.cached_tokens == 10
    (row,) = rows(cached, key_id)
    # gpt-4o's list price (no discount on this provider): $2.50 in, $1.25 cached, $10 out.
    assert row["cached_tokens"] == 10
    assert row["cost_usd"] == pytest.approx((4 * 2.5 + 10 * 1.25 + 30 * 10) / 1e6, abs=1e-12)
    assert row["list_cost_usd"] == pytest.approx((14 * 2.5 + 30 * 10) / 1e6, abs=1e-12)
    assert row["saving_prompt_cache_usd"] == pytest.approx(10 * 1.25 / 1e6, abs=1e-12)
    assert row["saving_discount_usd"] == 0


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_cached_content_through_the_gateway(cached: Service, stream: bool):
    key_id, secret = new_key(cached)
    client = openai.OpenAI(api_key=secret, base_url=cached.base_url, max_retries=0)
    request = {"model": "text@cached-6", "messages": [{"role": "user", "content": "sky?"}]}
    if stream:
        options = {"include_usage": True}
        with client.chat.completions.stream(**request, stream_options=options) as answer:
            usage = answer.get_final_completion().usage
    else:
        usage = client.chat.completions.create(**request).usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens) == (9, 6)
    (row,) = rows(cached, key_id)
    # The text fixture: 9 prompt tokens (6 of them cached), 11 answer and 25 thinking tokens.
    assert (row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"]) == (9, 6, 36)
    fresh, read, output = 3 * FLASH["input"], 6 * FLASH["cached_input"], 36 * FLASH["output"]
    assert row["cost_usd"] == pytest.approx((fresh + read + output) / 1e6, abs=1e-9)
    assert row["list_cost_usd"] == pytest.approx((9 * FLASH["input"] + output) / 1e6, abs=1e-9)
    saved = 6 * (FLASH["input"] - FLASH["cached_input"]) / 1e6
    assert row["saving_prompt_cache_usd"] == pytest.approx(saved, abs=1e-9)
    assert row["provider"] == "google" and row["model"] == "gemini-2.5-flash"


def test_gemini_cached_content_is_priced_as_cached_input():
    usage = gemini_usage(
        {"promptTokenCount": 1000, "candidatesTokenCount": 100, "cachedContentTokenCount": 800}
    )
    tokens = TokenCounts.from_openai(usage)
    assert (tokens.prompt, tokens.cached, tokens.completion) == (1000, 800, 100)
    flash = ModelPrice(input=0.30, cached_input=0.075, output=2.50)
    assert flash.cost(tokens) == pytest.approx((200 * 0.30 + 800 * 0.075 + 100 * 2.5) / 1e6)


def test_default_cache_prices_follow_anthropics_multipliers():
    price = ModelPrice(input=4.0, output=20.0)
    tokens = TokenCounts(prompt=1000, cached=300, cache_write=500, cache_write_1h=200)
    # 200 fresh, 300 read at 0.1x, 300 written for 5 minutes at 1.25x, 200 for an hour at 2x.
    expected = (200 * 4 + 300 * 0.4 + 300 * 5 + 200 * 8) / 1e6
    assert price.cost(tokens) == pytest.approx(expected)
    explicit = ModelPrice.model_validate(
        {
            "input": 4.0,
            "output": 20.0,
            "cached_input": 1.0,
            "cache_write": 6.0,
            "cache_write_1h": 7.0,
        }
    )
    assert explicit.cost(tokens) == pytest.approx((200 * 4 + 300 * 1 + 300 * 6 + 200 * 7) / 1e6)


def test_savings_by_source_add_up_in_the_admin_api(cached: Service):
    key_id, secret = new_key(cached)
    client = openai.OpenAI(api_key=secret, base_url=cached.base_url, max_retries=0)
    messages = [
        {
            "role": "system",
            "content": [{"type": "text", "text": long_text(), "cache_control": EPHEMERAL}],
        },
        {"role": "user", "content": "hi"},
    ]
    for _ in range(3):
        client.chat.completions.create(model="basic_response", messages=messages)
    spend = admin(cached, "/admin/spend", key_id=key_id)
    sources = spend["savings_by_source"]
    assert sources["prompt_cache"] > 0 and sources["discount"] > 0
    assert sources["route"] == sources["response_cache"] == sources["semantic_cache"] == 0
    assert round(sum(sources.values()), 6) == round(spend["savings_usd"], 6)
    assert round(spend["cost_usd"] + sum(sources.values()), 6) == round(spend["list_cost_usd"], 6)
    for group in ("key", "model", "day"):
        (row,) = admin(cached, "/admin/usage", group_by=group, key_id=key_id)["data"]
        assert row["savings_by_source"] == sources
        assert row["cache_write_tokens"] == spend["cache_write_tokens"] > 0


def test_cli_reports_savings_by_source(cached: Service):
    key_id, secret = new_key(cached)
    client = openai.OpenAI(api_key=secret, base_url=cached.base_url, max_retries=0)
    system = {"type": "text", "text": long_text(), "cache_control": EPHEMERAL}
    messages = [{"role": "system", "content": [system]}, {"role": "user", "content": "hi"}]
    for _ in range(2):
        client.chat.completions.create(model="basic_response", messages=messages)
    sources = admin(cached, "/admin/spend", key_id=key_id)["savings_by_source"]
    data = cached.log.parent / "data"  # the gateway's SQLite store
    command = ["usage", "savings", "--group-by", "day", "--key", key_id, "--data-dir", str(data)]
    result = subprocess.run(
        [sys.executable, "-m", "savegate", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "PROMPT CACHE" in result.stdout and "CHEAPER ROUTE" in result.stdout
    (line,) = [line for line in result.stdout.splitlines() if "20" in line and "$" in line]
    for source in ("discount", "prompt_cache"):
        assert f"${sources[source]:,.4f}" in line
