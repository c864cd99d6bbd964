"""Gemini `streamGenerateContent?alt=sse` responses → OpenAI chat completion chunks."""

from __future__ import annotations

from typing import Any

from savegate.core.payload import Json
from savegate.providers.gemini.convert import split_parts, usage_of
from savegate.providers.gemini.finish import failure, finish_reason
from savegate.wire.openai_chat import ChunkBuilder
from savegate.wire.sse import Event


class StreamTranslator:
    """A response whose finishReason says there is no answer raises `ProviderError`: before
    the first chunk the router can still retry it; later it ends the stream as an error."""

    def __init__(self, model: str, include_usage: bool, legacy: bool) -> None:
        self._chunks = ChunkBuilder(model)
        self._include_usage = include_usage
        self._legacy = legacy
        self._role_sent: set[int] = set()
        self._calls: dict[int, int] = {}  # candidate index → tool calls so far
        self._usage: dict[str, Any] | None = None
        self.finished = False

    def feed(self, response: dict[str, Any]) -> list[Json]:
        if response.get("modelVersion"):
            self._chunks.model = response["modelVersion"]
        if response.get("usageMetadata"):
            self._usage = response["usageMetadata"]
        out: list[Json] = []
        candidates = response.get("candidates") or []
        for candidate in candidates:
            # Raised before this response's own parts: these reasons come with none.
            if (error := failure(candidate, self._chunks.model)) is not None:
                raise error
        if not candidates and (response.get("promptFeedback") or {}).get("blockReason"):
            out.append(
                self._chunks.chunk(0, {"role": "assistant", "content": ""}, "content_filter")
            )
            self.finished = True
        for position, candidate in enumerate(candidates):
            index = candidate.get("index", position)
            parts = (candidate.get("content") or {}).get("parts") or []
            text, thoughts, calls = split_parts(parts)
            if thoughts:
                out.append(self._delta(index, {"reasoning_content": thoughts}))
            if text:
                out.append(self._delta(index, {"content": text}))
            for call in calls:
                out.extend(self._call(index, call))
            reason = candidate.get("finishReason")
            if reason:
                self.finished = True
                finish = finish_reason(reason, bool(self._calls.get(index)))
                if finish == "tool_calls" and self._legacy:
                    finish = "function_call"
                if index not in self._role_sent:
                    out.append(self._delta(index, {}))
                out.append(self._chunks.chunk(index, {}, finish))
        return out

    def is_error(self, event: Event, payload: dict[str, Any]) -> bool:
        return "error" in payload

    def end(self) -> list[Json]:
        if self._include_usage:
            return [self._chunks.usage_chunk(usage_of(self._usage))]
        return []

    def _delta(self, index: int, delta: dict[str, Any], tool: bool = False) -> Json:
        if index not in self._role_sent:
            self._role_sent.add(index)
            delta = {"role": "assistant", "content": None if tool else "", **delta}
        return self._chunks.chunk(index, delta)

    def _call(self, index: int, call: dict[str, Any]) -> list[Json]:
        number = self._calls.get(index, 0)
        self._calls[index] = number + 1
        name, arguments = call["function"]["name"], call["function"]["arguments"]
        if self._legacy:
            head: dict[str, Any] = {"function_call": {"name": name, "arguments": ""}}
            rest: dict[str, Any] = {"function_call": {"arguments": arguments}}
        else:
            head = {
                "tool_calls": [
                    {
                        "index": number,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }
                ]
            }
            rest = {"tool_calls": [{"index": number, "function": {"arguments": arguments}}]}
        return [self._delta(index, head, tool=True), self._chunks.chunk(index, rest)]
