"""Chat chunks → Responses API stream events, each with its `sequence_number`; or a
native upstream's own events, relayed as they came."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from savegate.core.errors import GatewayError
from savegate.wire.chunks import Chunks
from savegate.wire.responses import (
    call_item,
    incomplete_reason,
    message_item,
    new_id,
    response_object,
    tool_names,
    usage,
)
from savegate.wire.sse import named_event


class ResponsesFramer:
    """Opens and closes output items as the chunks' deltas change kind; the final
    response object is handed to `on_complete` (to be stored)."""

    def __init__(
        self,
        response_id: str,
        body: dict[str, Any],
        on_complete: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        self._id = response_id
        self._body = body
        self._on_complete = on_complete
        self._sequence = 0
        self._model = body.get("model", "")
        self._names = tool_names(body)
        self._output: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None  # the item being streamed
        self._text = ""
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None
        self._events: list[bytes] = []

    def _emit(self, kind: str, **fields: Any) -> None:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        self._events.append(named_event(kind, payload))

    def _snapshot(self, status: str, **extra: Any) -> dict[str, Any]:
        return response_object(
            self._id,
            self._body,
            model=self._model,
            output=self._output,
            status=status,
            usage_=extra.pop("usage_", None),
            **extra,
        )

    def start(self) -> bytes:
        self._emit("response.created", response=self._snapshot("in_progress"))
        self._emit("response.in_progress", response=self._snapshot("in_progress"))
        return self._drain()

    def _drain(self) -> bytes:
        events, self._events = self._events, []
        return b"".join(events)

    def _open_item(self, item: dict[str, Any]) -> None:
        self._close_item()
        self._open = item
        self._emit("response.output_item.added", output_index=len(self._output), item=item)

    def _close_item(self) -> None:
        item, index = self._open, len(self._output)
        if item is None:
            return
        if item["type"] == "message":
            part = {"type": "output_text", "text": self._text, "annotations": []}
            self._emit(
                "response.output_text.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                text=self._text,
                logprobs=[],
            )
            self._emit(
                "response.content_part.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=part,
            )
            item = message_item(item["id"], self._text)
            self._text = ""
        else:
            item = {**item, "status": "completed"}
            self._emit(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                arguments=item["arguments"],
                name=item["name"],
            )
        self._emit("response.output_item.done", output_index=index, item=item)
        self._output.append(item)
        self._open = None

    def feed(self, batch: Chunks) -> bytes:
        for item in batch:
            chunk = item.data
            self._model = chunk.get("model") or self._model
            if chunk.get("usage"):
                self._usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                if choice.get("index", 0) == 0:
                    self._choice(choice)
        return self._drain()

    def _choice(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or {}
        text = delta.get("content")
        if text:
            if self._open is None or self._open["type"] != "message":
                self._open_item(message_item(new_id("msg"), "", status="in_progress"))
                assert self._open is not None
                self._emit(
                    "response.content_part.added",
                    item_id=self._open["id"],
                    output_index=len(self._output),
                    content_index=0,
                    part={"type": "output_text", "text": "", "annotations": []},
                )
            self._text += text
            self._emit(
                "response.output_text.delta",
                item_id=self._open["id"],
                output_index=len(self._output),
                content_index=0,
                delta=text,
                logprobs=[],
            )
        for call in delta.get("tool_calls") or []:
            function = call.get("function") or {}
            if call.get("id"):
                self._open_item(
                    call_item(
                        new_id("fc"),
                        call["id"],
                        function.get("name", ""),
                        "",
                        self._names,
                        status="in_progress",
                    )
                )
            fragment = function.get("arguments")
            if fragment and self._open is not None and self._open["type"] == "function_call":
                self._open["arguments"] += fragment
                self._emit(
                    "response.function_call_arguments.delta",
                    item_id=self._open["id"],
                    output_index=len(self._output),
                    delta=fragment,
                )
        if choice.get("finish_reason"):
            self._finish = choice["finish_reason"]
            self._close_item()

    async def finish(self) -> bytes:
        self._close_item()
        incomplete = incomplete_reason(self._finish)
        final = self._snapshot(
            "incomplete" if incomplete else "completed",
            usage_=usage(self._usage),
            incomplete=incomplete,
        )
        await self._on_complete(final)  # stored before the client hears it is done
        self._emit("response.incomplete" if incomplete else "response.completed", response=final)
        return self._drain()

    def fail(self, error: GatewayError) -> bytes:
        pending = self._drain()  # what a feed cut short had framed already
        return pending + failure_events(error, self._sequence, self._snapshot("in_progress"))


def failure_events(error: GatewayError, sequence: int, response: dict[str, Any] | None) -> bytes:
    """`error` then `response.failed` (when the response is known), numbered from
    `sequence`: how a stream cut short ends."""
    code = error.code or error.type
    events = [
        named_event(
            "error",
            {
                "type": "error",
                "sequence_number": sequence,
                "code": code,
                "message": error.message,
                "param": error.param,
            },
        )
    ]
    if response is not None:
        failed = {
            **response,
            "status": "failed",
            "error": {"code": error.code or "server_error", "message": error.message},
        }
        events.append(
            named_event(
                "response.failed",
                {"type": "response.failed", "sequence_number": sequence + 1, "response": failed},
            )
        )
    return b"".join(events)


class NativeFramer:
    """The events of an upstream that speaks the Responses API, as its own bytes; only a
    failure of the stream itself is framed here, numbered after the events relayed."""

    def __init__(self) -> None:
        self._sequence = 0
        self._first: Chunks | None = None  # its `response.created`, read only on a failure

    def start(self) -> bytes:
        return b""

    def feed(self, batch: Chunks) -> bytes:
        if self._first is None and len(batch):
            self._first = batch
        self._sequence += len(batch)
        return batch.sse

    async def finish(self) -> bytes:
        return b""

    def fail(self, error: GatewayError) -> bytes:
        first = self._first.items[0].data if self._first is not None else None
        response = first.get("response") if isinstance(first, dict) else None
        known = response if isinstance(response, dict) and response else None
        return failure_events(error, self._sequence, known)
