"""Native Responses API answers kept by the response cache, and replayed.

A streamed answer is kept as the upstream sent it: its events' bytes, and the response
its `response.completed` (or `response.incomplete`) carried, which answers a request that
does not stream. An answer first produced whole is streamed as the event sequence OpenAI
documents: `response.created`, `response.in_progress`, each output item added, its
content (each text in one delta, a function call's arguments in one delta) and done,
then `response.completed`; items of other kinds (reasoning, hosted tools' calls) are
added and done whole. Ids are the upstream's: a replay is that stored response.
"""

from __future__ import annotations

from typing import Any

from savegate.core.payload import Json
from savegate.wire.chunks import Chunks
from savegate.wire.sse import named_event

# The ends of a stream that answered, and the statuses of a response worth keeping.
_ENDS = (b'"response.completed"', b'"response.incomplete"')
KEPT = frozenset({"completed", "incomplete"})


def answered(response: dict[str, Any]) -> bool:
    """Whether the response is an answer (not one queued, in progress or failed)."""
    return response.get("status") in KEPT


class ResponsesAssembler:
    """Keeps a native Responses stream: its bytes, and the response it ended with."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._response: dict[str, Any] | None = None

    def feed(self, batch: Chunks) -> None:
        self._parts.append(batch.sse)
        if any(batch.occurrences(end) for end in _ENDS):  # parsed only where it ends
            for item in batch:
                data = item.data
                if isinstance(data, dict) and isinstance(data.get("response"), dict):
                    self._response = data["response"]

    def answer(self, usage: dict[str, Any] | None) -> dict[str, Any] | None:
        response = self._response
        return response if response is not None and answered(response) else None

    @property
    def events(self) -> bytes | None:
        """The stream's bytes; None if they are not UTF-8 (a replay is then made of the
        response)."""
        events = b"".join(self._parts)
        try:
            events.decode()
        except UnicodeDecodeError:
            return None
        return events


class _Events:
    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def emit(self, kind: str, **fields: Any) -> None:
        self.payloads.append({"type": kind, "sequence_number": len(self.payloads), **fields})


def _message(events: _Events, index: int, item: dict[str, Any]) -> None:
    where = {"item_id": item.get("id"), "output_index": index}
    events.emit(
        "response.output_item.added",
        output_index=index,
        item={**item, "status": "in_progress", "content": []},
    )
    for at, part in enumerate(item.get("content") or []):
        where["content_index"] = at
        if part.get("type") == "refusal":
            refusal = part.get("refusal") or ""
            events.emit("response.content_part.added", **where, part={**part, "refusal": ""})
            events.emit("response.refusal.delta", **where, delta=refusal)
            events.emit("response.refusal.done", **where, refusal=refusal)
        else:
            text = part.get("text") or ""
            empty = {**part, "text": "", "annotations": []}
            events.emit("response.content_part.added", **where, part=empty)
            events.emit("response.output_text.delta", **where, delta=text, logprobs=[])
            events.emit("response.output_text.done", **where, text=text, logprobs=[])
        events.emit("response.content_part.done", **where, part=part)
    events.emit("response.output_item.done", output_index=index, item=item)


def _call(events: _Events, index: int, item: dict[str, Any]) -> None:
    arguments = item.get("arguments") or ""
    where = {"item_id": item.get("id"), "output_index": index}
    opened = {**item, "status": "in_progress", "arguments": ""}
    events.emit("response.output_item.added", output_index=index, item=opened)
    events.emit("response.function_call_arguments.delta", **where, delta=arguments)
    events.emit("response.function_call_arguments.done", **where, arguments=arguments)
    events.emit("response.output_item.done", output_index=index, item=item)


def response_events(response: dict[str, Any]) -> Chunks:
    """The stream of a whole response, as named events."""
    events = _Events()
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    for kind in ("response.created", "response.in_progress"):
        events.emit(kind, response=started)
    for index, item in enumerate(response.get("output") or []):
        if item.get("type") == "message":
            _message(events, index, item)
        elif item.get("type") == "function_call":
            _call(events, index, item)
        else:
            events.emit("response.output_item.added", output_index=index, item=item)
            events.emit("response.output_item.done", output_index=index, item=item)
    end = "response.incomplete" if response.get("status") == "incomplete" else "response.completed"
    events.emit(end, response=response)
    payloads = events.payloads
    sse = b"".join([named_event(payload["type"], payload) for payload in payloads])
    return Chunks([Json.of(payload) for payload in payloads], sse=sse, count=len(payloads))
