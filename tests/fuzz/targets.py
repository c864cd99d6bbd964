"""Atheris targets: coverage-guided bytes into the body parser, every validator and the
translators behind them, and the SSE decoder. `python -m tests.fuzz.targets -runs=N` (any
libFuzzer flags); a finding is an exception other than InvalidRequest, or a split stream
decoding differently from the whole one."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any

import atheris
import orjson

with atheris.instrument_imports(include=["savegate"]):
    from savegate.api.anthropic.convert import to_openai
    from savegate.api.anthropic.validate import validate_create_request
    from savegate.core.errors import InvalidRequest
    from savegate.providers.anthropic.convert import to_anthropic
    from savegate.providers.gemini.convert import to_gemini
    from savegate.wire.responses import chat_body, input_items
    from savegate.wire.sse import SSEDecoder
    from savegate.wire.validate import (
        parse_json_object,
        validate_chat_request,
        validate_completion_request,
        validate_embedding_request,
    )
    from savegate.wire.validate_responses import validate_responses_request


def _chat(body: dict[str, Any]) -> None:
    validate_chat_request(body)
    for translate in (lambda: to_anthropic(body, "m"), lambda: to_gemini(body)):
        with contextlib.suppress(InvalidRequest):
            orjson.dumps(translate())


def _responses(body: dict[str, Any]) -> None:
    validate_responses_request(body)
    _chat(chat_body(body, input_items(body)))


def _messages(body: dict[str, Any]) -> None:
    _chat(to_openai(validate_create_request(body)))


PIPELINES: list[Callable[[dict[str, Any]], Any]] = [
    _chat,
    validate_completion_request,
    validate_embedding_request,
    _responses,
    _messages,
]


def _events(reads: list[bytes]) -> list[Any]:
    decoder = SSEDecoder()
    return [e for read in reads for e in decoder.decode(read)] + decoder.flush()


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    pipeline = PIPELINES[fdp.ConsumeIntInRange(0, len(PIPELINES) - 1)]
    cut = fdp.ConsumeIntInRange(0, 1 << 16)
    raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    with contextlib.suppress(InvalidRequest):
        pipeline(parse_json_object(raw))
    # The same bytes as a stream: read whole, or in two pieces cut anywhere.
    cut %= len(raw) + 1
    assert _events([raw[:cut], raw[cut:]]) == _events([raw])


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
