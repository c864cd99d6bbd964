"""Finishing a stream whose upstream failed mid-way, on a fallback deployment.

Off by default (`routing.continue_streams`). When the upstream breaks after text has
been streamed, the partial answer is sent to the next deployment as an assistant turn
with a request to continue, and the continuation is streamed on under the original
stream's id, so the client sees one complete answer. Answers with tool calls, and
requests with n > 1, are never continued: a failure there still ends with the in-stream
error.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from savegate.core.errors import ProviderError
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers.base import ChatStream
from savegate.wire.chunks import Chunks

CONTINUE = (
    "Your previous answer was cut off. Continue it exactly from where it stopped, "
    "without repeating anything and without any preamble."
)
Reopen = Callable[[ChatRequest], Awaitable[ChatStream]]


def continuation_request(request: ChatRequest, partial: str) -> ChatRequest:
    messages = [
        *request.body["messages"],
        {"role": "assistant", "content": partial},
        {"role": "user", "content": CONTINUE},
    ]
    return request.with_body({**request.body, "messages": messages})


class ContinuingStream:
    def __init__(self, first: ChatStream, request: ChatRequest, reopen: Reopen) -> None:
        self._current = first
        self._request = request
        self._reopen = reopen
        self._head: dict[str, Any] | None = None
        self._batches: AsyncGenerator[Chunks, None] | None = None

    def __aiter__(self) -> AsyncIterator[Chunks]:
        if self._batches is None:
            self._batches = self._relay()
        return self._batches

    async def _relay(self) -> AsyncGenerator[Chunks, None]:
        text: list[str] = []
        tool_calls = False
        try:
            async for batch in self._current:
                for chunk in batch:
                    data = chunk.data
                    if self._head is None and data.get("id"):
                        self._head = {k: data[k] for k in ("id", "created", "model") if k in data}
                    for choice in data.get("choices") or []:
                        delta = choice.get("delta") or {}
                        text.append(delta.get("content") or "")
                        tool_calls = tool_calls or bool(delta.get("tool_calls"))
                yield batch
            return
        except ProviderError:
            if tool_calls or not "".join(text) or self._head is None:
                raise
        await self._current.aclose()
        self._current = await self._reopen(continuation_request(self._request, "".join(text)))
        async for batch in self._current:
            chunks = [c for c in (self._continued(chunk.data) for chunk in batch) if c is not None]
            if chunks:
                yield Chunks(chunks)

    def _continued(self, data: dict[str, Any]) -> Json | None:
        """A chunk of the continuation under the original stream's id, or None if nothing
        is left of it."""
        assert self._head is not None
        data = {**data, **self._head}
        for choice in data.get("choices") or []:
            delta = choice.get("delta") or {}
            if "role" in delta:
                # The client has had its role chunk: the continuation's is dropped.
                choice["delta"] = {
                    k: v for k, v in delta.items() if k != "role" and v not in (None, "")
                }
        if data.get("choices") and not any(
            c["delta"] or c.get("finish_reason") for c in data["choices"]
        ):
            return None
        return Json.of(data)

    async def aclose(self) -> None:
        if self._batches is not None:
            await self._batches.aclose()
        await self._current.aclose()
