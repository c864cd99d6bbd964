"""Anthropic's stream framing: OpenAI chunks → Messages events."""

from __future__ import annotations

from typing import Any

from savegate.api.anthropic.convert import FINISH_TO_STOP, message_id, usage_of
from savegate.api.anthropic.errors import error_type
from savegate.core.errors import GatewayError
from savegate.wire.chunks import Chunks
from savegate.wire.sse import named_event


class AnthropicFramer:
    """Opens and closes content blocks as the chunks' deltas change kind."""

    def __init__(self) -> None:
        self._started = False
        self._next_block = 0
        self._open: str | None = None  # "text", "thinking" or "tool_use"
        self._stop_reason = "end_turn"
        self._usage: dict[str, Any] | None = None
        self._events: list[bytes] = []

    def _emit(self, name: str, payload: dict[str, Any]) -> None:
        self._events.append(named_event(name, {"type": name, **payload}))

    def _start(self, kind: str, block: dict[str, Any]) -> None:
        self._close()
        self._open = kind
        self._emit("content_block_start", {"index": self._next_block, "content_block": block})

    def _close(self) -> None:
        if self._open is not None:
            self._emit("content_block_stop", {"index": self._next_block})
            self._next_block += 1
            self._open = None

    def _delta(self, delta: dict[str, Any]) -> None:
        self._emit("content_block_delta", {"index": self._next_block, "delta": delta})

    def start(self) -> bytes:
        return b""

    def feed(self, batch: Chunks) -> bytes:
        for chunk in batch:
            self._chunk(chunk.data)
        return self._drain()

    def _drain(self) -> bytes:
        events, self._events = self._events, []
        return b"".join(events)

    def _chunk(self, chunk: dict[str, Any]) -> None:
        if not self._started:
            self._started = True
            self._emit(
                "message_start",
                {
                    "message": {
                        "id": message_id(chunk.get("id", "")),
                        "type": "message",
                        "role": "assistant",
                        "content": [],
                        "model": chunk.get("model", ""),
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": 0, "output_tokens": 0},
                    }
                },
            )
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) == 0:
                self._choice(choice)

    def _choice(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or {}
        if delta.get("reasoning_content"):
            if self._open != "thinking":
                self._start("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            self._delta({"type": "thinking_delta", "thinking": delta["reasoning_content"]})
        if delta.get("content"):
            if self._open != "text":
                self._start("text", {"type": "text", "text": ""})
            self._delta({"type": "text_delta", "text": delta["content"]})
        calls = list(delta.get("tool_calls") or [])
        if delta.get("function_call"):
            legacy = delta["function_call"]
            calls.append(
                {
                    "id": "toolu_fn_" + legacy["name"] if legacy.get("name") else None,
                    "function": legacy,
                }
            )
        for call in calls:
            function = call.get("function") or {}
            if call.get("id"):
                self._start(
                    "tool_use",
                    {
                        "type": "tool_use",
                        "id": call["id"],
                        "name": function.get("name", ""),
                        "input": {},
                    },
                )
            if function.get("arguments"):
                self._delta({"type": "input_json_delta", "partial_json": function["arguments"]})
        if choice.get("finish_reason"):
            self._close()
            self._stop_reason = FINISH_TO_STOP.get(choice["finish_reason"], "end_turn")

    async def finish(self) -> bytes:
        self._close()
        usage = usage_of(self._usage)
        self._emit(
            "message_delta",
            {
                "delta": {"stop_reason": self._stop_reason, "stop_sequence": None},
                "usage": usage,
            },
        )
        self._emit("message_stop", {})
        return self._drain()

    def fail(self, error: GatewayError) -> bytes:
        self._emit("error", {"error": {"type": error_type(error), "message": error.message}})
        return self._drain()
