"""The embedded model, loaded once for the whole session, and helpers to drive it.

No pytest-asyncio here: one `asyncio.Runner` runs every test's coroutine on the same
event loop, the loop the provider's worker thread posts its results to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import pytest

from savegate.core.keys import ApiKey
from savegate.core.payload import Json
from savegate.core.request import ChatRequest, RequestContext
from savegate.providers.local.model import EmbeddedModel, EmbeddedStream

T = TypeVar("T")

COLOURS = [{"role": "user", "content": "Name three colours."}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["c", "f"]},
                "days": {"type": "integer"},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}


def api_key(key_id: str = "key-a") -> ApiKey:
    return ApiKey(
        id=key_id, name=key_id, hint="sk-…test", is_admin=False, created_at=datetime.now(UTC)
    )


def chat(body: dict[str, Any], key: str = "key-a") -> ChatRequest:
    body = {"model": "gpt-4", **body}
    context = RequestContext(request_id="req_test", key=api_key(key))
    return ChatRequest(body=body, raw=orjson.dumps(body), context=context)


async def read_all(stream: EmbeddedStream) -> list[dict[str, Any]]:
    try:
        return [chunk.data async for batch in stream for chunk in batch]
    finally:
        await stream.aclose()


def content_of(chunks: list[dict[str, Any]], index: int = 0) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for chunk in chunks
        for choice in chunk["choices"]
        if choice["index"] == index
    )


def message_of(answer: Json, index: int = 0) -> dict[str, Any]:
    return answer.data["choices"][index]["message"]


class Loop:
    """Runs coroutines on one event loop shared by the whole session."""

    def __init__(self) -> None:
        self._runner = asyncio.Runner()

    def __call__(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coroutine)

    def close(self) -> None:
        self._runner.close()


@pytest.fixture(scope="session")
def run() -> Iterator[Loop]:
    loop = Loop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def provider(run: Loop) -> Iterator[EmbeddedModel]:
    local = EmbeddedModel()
    run(local.start())
    yield local
    run(local.aclose())
