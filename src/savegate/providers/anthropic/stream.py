"""Anthropic stream events → OpenAI chat completion chunks."""

from __future__ import annotations

from typing import Any

import orjson

from savegate.core.payload import Json
from savegate.providers.anthropic.convert import STOP_REASONS, STRUCTURED_TOOL, usage_of
from savegate.wire.openai_chat import ChunkBuilder
from savegate.wire.sse import Event


class StreamTranslator:
    """Feed it each event's payload; it returns the chunks to send, in order.

    The role goes out with the first content block, so that a tool-call answer starts
    with `content: null` as OpenAI's does. Tool calls are numbered by our own counter,
    never by Anthropic's block index (which also counts text and thinking blocks).

    A tool without parameters gets no argument fragment at all (only `partial_json: ""`),
    so a tool block that closes without one sends its start input (`{}`) as its
    arguments: the fragments of every call always join into valid JSON.
    """

    def __init__(self, include_usage: bool, legacy: bool) -> None:
        self._include_usage = include_usage
        self._legacy = legacy
        self._chunks = ChunkBuilder("")
        self._role_sent = False
        self._tools: dict[int, int] = {}  # block index → tool call number
        self._structured: set[int] = set()  # blocks carrying response_format output
        self._unsent: dict[int, str] = {}  # tool block → its start input, until a fragment
        self._usage: dict[str, Any] = {}
        self.finished = False

    def feed(self, event: dict[str, Any]) -> list[Json]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self._chunks.id = "chatcmpl-" + str(message.get("id", ""))
            self._chunks.model = str(message.get("model", ""))
            self._usage.update(message.get("usage") or {})
            return []
        if kind == "content_block_start":
            return self._block_start(event.get("index", 0), event.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(event.get("index", 0), event.get("delta") or {})
        if kind == "content_block_stop":
            return self._close(event.get("index", 0))
        if kind == "message_delta":
            self._usage.update(
                {k: v for k, v in (event.get("usage") or {}).items() if v is not None}
            )
            stop = (event.get("delta") or {}).get("stop_reason")
            if not stop:
                return []
            # Blocks never closed by a `content_block_stop` still get whole arguments.
            left_open = [chunk for index in list(self._unsent) for chunk in self._close(index)]
            return [*left_open, self._finish(stop)]
        if kind == "message_stop":
            self.finished = True
        return []

    def is_error(self, event: Event, payload: dict[str, Any]) -> bool:
        return event.event == "error" or payload.get("type") == "error"

    def end(self) -> list[Json]:
        if self._include_usage:
            return [self._chunks.usage_chunk(usage_of(self._usage))]
        return []

    def _delta(self, delta: dict[str, Any], first_is_tool: bool = False) -> Json:
        if not self._role_sent:
            self._role_sent = True
            delta = {"role": "assistant", "content": None if first_is_tool else "", **delta}
        return self._chunks.chunk(0, delta)

    def _block_start(self, index: int, block: dict[str, Any]) -> list[Json]:
        kind = block.get("type")
        if kind == "tool_use":
            self._unsent[index] = orjson.dumps(block.get("input") or {}).decode()
        if kind == "tool_use" and block.get("name") == STRUCTURED_TOOL:
            self._structured.add(index)
            return [] if self._role_sent else [self._delta({})]
        if kind == "tool_use":
            number = self._tools[index] = len(self._tools)
            if self._legacy:
                call: dict[str, Any] = {
                    "function_call": {"name": block.get("name"), "arguments": ""}
                }
            else:
                call = {
                    "tool_calls": [
                        {
                            "index": number,
                            "id": block.get("id"),
                            "type": "function",
                            "function": {"name": block.get("name"), "arguments": ""},
                        }
                    ]
                }
            return [self._delta(call, first_is_tool=True)]
        text = block.get("text") if kind == "text" else None
        if text:
            return [self._delta({"content": text})]
        return [] if self._role_sent else [self._delta({})]

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[Json]:
        kind = delta.get("type")
        if kind == "text_delta":
            return [self._delta({"content": delta.get("text", "")})]
        if kind == "thinking_delta":
            return [self._delta({"reasoning_content": delta.get("thinking", "")})]
        if kind == "input_json_delta":
            fragment = delta.get("partial_json", "")
            if fragment:
                self._unsent.pop(index, None)
            return self._arguments(index, fragment)
        return []

    def _close(self, index: int) -> list[Json]:
        """A tool block ended: its start input, if no fragment of it was sent."""
        return self._arguments(index, self._unsent.pop(index, ""))

    def _arguments(self, index: int, fragment: str) -> list[Json]:
        """The chunk carrying `fragment` of a tool block's input JSON, if any."""
        if not fragment:
            return []
        if index in self._structured:
            return [self._delta({"content": fragment})]
        if self._legacy:
            return [self._delta({"function_call": {"arguments": fragment}})]
        call = {"index": self._tools.get(index, 0), "function": {"arguments": fragment}}
        return [self._delta({"tool_calls": [call]})]

    def _finish(self, stop_reason: str) -> Json:
        finish = STOP_REASONS.get(stop_reason, "stop")
        if finish == "tool_calls" and not self._tools:
            finish = "stop"
        elif finish == "tool_calls" and self._legacy:
            finish = "function_call"
        if not self._role_sent:
            self._role_sent = True
            return self._chunks.chunk(0, {"role": "assistant", "content": ""}, finish)
        return self._chunks.chunk(0, {}, finish)
