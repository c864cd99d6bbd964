"""Server-sent events: the one place that frames and parses SSE.

Framing follows OpenAI exactly: `data: <compact JSON>\\n\\n`, comments for keep-alive,
`data: [DONE]\\n\\n` at the end, and the error object in-band when a stream fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from savegate.core.errors import GatewayError

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"


def data_event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def named_event(name: str, payload: Any) -> bytes:
    """An event with an `event:` line, as Anthropic's SDK dispatches on it."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def error_event(error: GatewayError) -> bytes:
    return data_event(orjson.dumps(error.body()))


@dataclass(slots=True)
class Event:
    data: bytes
    event: str | None = None


def json_data_events(raw: bytes) -> int:
    """How many events `raw` holds if it is only whole one-line `data: {…}` events in
    OpenAI's exact framing (the common case), else 0. Two counts at C speed tell it:
    every line break must be one of the pairs that end an event, and every pair but
    the last must be followed by the next event's `data: {`."""
    if not (raw.startswith(b"data: {") and raw.endswith(b"\n\n")) or b"\r" in raw:
        return 0
    events = raw.count(b"\n\ndata: {") + 1
    return events if raw.count(b"\n") == 2 * events else 0


def data_payloads(raw: bytes) -> list[bytes]:
    """The payloads of bytes for which `json_data_events()` is not 0."""
    return [block[6:] for block in raw[:-2].split(b"\n\n")]


def payloads(raw: bytes) -> list[bytes]:
    """The payloads of whole events: cut at C speed when they are `data:` lines only (as
    `json_data_events` found them), else parsed (named events: the Responses API's)."""
    if raw.startswith(b"data: "):
        return data_payloads(raw)
    return [event.data for event in SSEDecoder().decode(raw) if event.data]


class SSEDecoder:
    """Incremental SSE parser: `decode()` bytes as they arrive, `flush()` at the end.

    Only `event:` and `data:` fields matter to us; comments and `id:`/`retry:` are dropped.
    Multi-line data is joined with `\\n` as the SSE spec says.
    """

    __slots__ = ("_buffer", "_data", "_event")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self._event: str | None = None

    @property
    def idle(self) -> bool:
        """Between events: nothing of a partial event is held."""
        return not self._buffer and not self._data and self._event is None

    def decode(self, chunk: bytes) -> list[Event]:
        if self.idle and json_data_events(chunk):
            return [Event(data=payload) for payload in data_payloads(chunk)]
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[Event] = []
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end]
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            event = self._line(line)
            if event is not None:
                events.append(event)
        self._buffer = buffer[start:]
        return events

    def flush(self) -> list[Event]:
        events: list[Event] = []
        if self._buffer:
            line, self._buffer = self._buffer.rstrip(b"\r"), b""
            event = self._line(line)
            if event is not None:
                events.append(event)
        event = self._line(b"")
        if event is not None:
            events.append(event)
        return events

    def _line(self, line: bytes) -> Event | None:
        if not line:
            if not self._data and self._event is None:
                return None
            event = Event(data=b"\n".join(self._data), event=self._event)
            self._data, self._event = [], None
            return event
        if line[0] == 0x3A:  # ":" starts a comment
            return None
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        return None
