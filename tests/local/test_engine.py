"""The worker: cancellation, fairness across keys, context limits, errors before streaming."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from savegate.config import LocalModelConfig
from savegate.core.errors import ContextLengthExceeded, InvalidRequest
from savegate.providers.local.model import EmbeddedModel, EmbeddedStream
from tests.local.conftest import COLOURS, Loop, chat, read_all
from tests.local.test_answers import COLOURS_PROMPT

# Greedy SmolLM2 keeps counting for hundreds of tokens: a reliably long generation.
COUNTING = {
    "messages": [{"role": "user", "content": "Count from 1 to 500, separated by commas."}],
    "max_tokens": 400,
    "temperature": 0,
}


async def _settled(provider: EmbeddedModel, quiet: float = 0.4) -> int:
    """The generated-token counter once it has stopped moving for `quiet` seconds."""
    engine = provider.engine
    await asyncio.sleep(0.05)
    while True:
        seen = engine.tokens_generated
        await asyncio.sleep(quiet)
        if engine.tokens_generated == seen:
            return seen


def test_closing_the_stream_stops_generation(run: Loop, provider: EmbeddedModel):
    async def scenario() -> tuple[int, int, int, float]:
        engine = provider.engine
        await _settled(provider, 0.1)
        start = engine.tokens_generated
        stream = await provider.stream(chat(COUNTING), "m")
        seen = 0
        async for _ in stream:
            seen += 1
            if seen == 4:
                break
        await stream.aclose()
        stopped = await _settled(provider)
        # The next request starts at once: nothing is still running ahead of it.
        began = time.perf_counter()
        await provider.complete(chat({"messages": COLOURS, "max_tokens": 2}), "m")
        return start, stopped, engine.tokens_generated, time.perf_counter() - began

    start, stopped, after, elapsed = run(scenario())
    # Four chunks (role + 3 tokens) read; at most a token or two more were generated.
    assert stopped - start <= 6
    assert after - stopped == 2
    assert elapsed < 2


def test_cancelling_a_waiting_request_before_it_runs(run: Loop, provider: EmbeddedModel):
    async def scenario() -> tuple[int, int]:
        await _settled(provider, 0.1)
        start = provider.engine.tokens_generated
        running = await provider.stream(chat(COUNTING, "key-a"), "m")
        waiting = await provider.stream(chat({**COUNTING, "max_tokens": 32}, "key-b"), "m")
        await waiting.aclose()  # still queued behind the first: must never run
        async for _ in running:
            break
        await asyncio.sleep(0.2)
        await running.aclose()
        return start, await _settled(provider)

    start, stopped = run(scenario())
    # The running one made ~0.2 s of tokens; the waiting one (32 tokens) made none.
    assert stopped - start < 32


def test_cancelling_a_non_streaming_request(run: Loop, provider: EmbeddedModel):
    async def scenario() -> tuple[int, int]:
        await _settled(provider, 0.1)
        start = provider.engine.tokens_generated
        task = asyncio.create_task(provider.complete(chat(COUNTING), "m"))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return start, await _settled(provider)

    start, stopped = run(scenario())
    assert 0 < stopped - start < 200


def test_keys_take_turns(run: Loop, provider: EmbeddedModel):
    async def scenario() -> list[str]:
        body = {"messages": COUNTING["messages"], "max_tokens": 16, "temperature": 0}
        # Five requests of one key are queued (stream() returns once queued) before the
        # other key's single one.
        labels = [f"a{i}" for i in range(5)] + ["b"]
        streams = [
            await provider.stream(chat(body, "quiet-key" if label == "b" else "busy-key"), "m")
            for label in labels
        ]
        finished: list[str] = []

        async def drain(label: str, stream: EmbeddedStream) -> None:
            await read_all(stream)
            finished.append(label)

        await asyncio.gather(*map(drain, labels, streams))
        return finished

    order = run(scenario())
    # First come, first served would put "b" last; taking turns puts it second or third.
    assert order.index("b") <= 2
    assert [label for label in order if label != "b"] == ["a0", "a1", "a2", "a3", "a4"]


def test_concurrent_streams_all_complete(run: Loop, provider: EmbeddedModel):
    async def scenario() -> list[list[dict]]:
        streams = [
            await provider.stream(chat({"messages": COLOURS, "max_tokens": 6}, f"k{i}"), "m")
            for i in range(3)
        ]
        return await asyncio.gather(*(read_all(stream) for stream in streams))

    for chunks in run(scenario()):
        assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_context_too_long_is_refused_before_streaming(run: Loop, provider: EmbeddedModel):
    long = {"messages": [{"role": "user", "content": "word " * 9000}], "max_tokens": 5}
    before = provider.engine.tokens_generated
    for call in (provider.complete, provider.stream):
        with pytest.raises(ContextLengthExceeded) as info:
            run(call(chat(long), "m"))
        error = info.value
        assert error.status == 400 and error.code == "context_length_exceeded"
        assert error.param == "messages" and error.type == "invalid_request_error"
        assert "8192" in error.message
    assert provider.engine.tokens_generated == before


@pytest.fixture(scope="module")
def small(run: Loop) -> Iterator[EmbeddedModel]:
    """A second instance with a 256-token context (llama.cpp's smallest), to reach its
    limits quickly."""
    local = EmbeddedModel(LocalModelConfig(context_tokens=256))
    run(local.start())
    yield local
    run(local.aclose())


def test_max_tokens_beyond_the_context_is_capped(run: Loop, small: EmbeddedModel):
    assert small.engine.n_ctx == 256
    words = 256 - len(small.engine.tokenize(COLOURS_PROMPT)) - 3
    body = {
        "messages": [{"role": "user", "content": "Name three colours." + " word" * words}],
        "max_tokens": 1000,
        "temperature": 0,
    }
    answer = run(small.complete(chat(body), "m")).data
    usage = answer["usage"]
    assert 250 < usage["prompt_tokens"] < 256
    assert usage["prompt_tokens"] + usage["completion_tokens"] <= 256
    if usage["prompt_tokens"] + usage["completion_tokens"] == 256:
        assert answer["choices"][0]["finish_reason"] == "length"


def test_context_limit_counts_the_whole_prompt(run: Loop, small: EmbeddedModel):
    body = {"messages": [{"role": "user", "content": "word " * 300}]}
    with pytest.raises(ContextLengthExceeded) as info:
        run(small.complete(chat(body), "m"))
    assert "maximum context length is 256 tokens" in info.value.message


def test_bad_tool_choice_is_refused_before_streaming(run: Loop, provider: EmbeddedModel):
    tools = [{"type": "function", "function": {"name": "get_time"}}]
    body = {
        "messages": COLOURS,
        "tools": tools,
        "tool_choice": {"type": "function", "function": {"name": "nope"}},
    }
    with pytest.raises(InvalidRequest) as info:
        run(provider.stream(chat(body), "m"))
    assert info.value.status == 400 and info.value.param == "tool_choice"
