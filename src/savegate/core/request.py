"""What a request carries through the pipeline once the HTTP layer has parsed it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from savegate.core.keys import ApiKey
from savegate.core.outcome import Outcome


def _no_header(name: str) -> str | None:
    return None


@dataclass(slots=True)
class BatchLine:
    """A request made for one line of a batch: its usage rows are held here (`records`),
    to be written with the line's result in one transaction, so that a line is metered
    exactly once whatever stops the process."""

    batch_id: str
    records: list[Any] = field(default_factory=list)


@dataclass(slots=True)
class RequestContext:
    request_id: str
    key: ApiKey
    started: float = field(default_factory=time.perf_counter)
    # A request header by its lower-case name, read only by what needs one (the cache).
    header: Callable[[str], str | None] = _no_header
    batch: BatchLine | None = None
    # The last attempt's usage record and target, once it ended: for the access log.
    last_attempt: tuple[Any, Any] | None = None
    outcome: Outcome = field(default_factory=Outcome)  # what the request came to, so far


@dataclass(slots=True)
class ChatRequest:
    """A validated chat completion request in the OpenAI dialect (our neutral form).

    `translated`: the gateway made it from another dialect (`/v1/messages`), so it may
    carry that dialect's prompt-caching breakpoints (`cache_control`), which only the
    Anthropic provider passes on; a client's own chat request goes out as it was sent."""

    body: dict[str, Any]
    raw: bytes
    context: RequestContext
    translated: bool = False

    def with_body(self, body: dict[str, Any]) -> ChatRequest:
        """The same request with another body (serialised once, here)."""
        return ChatRequest(body, orjson.dumps(body), self.context, self.translated)

    def with_field(self, name: str, value: Any) -> ChatRequest:
        """The same request with one top-level field set. A new field is spliced into
        the client's own bytes: a long conversation is not serialised again."""
        body = {**self.body, name: value}
        start = self.raw.find(b"{") + 1
        if name in self.body or not start or self.raw[start:].lstrip().startswith(b"}"):
            return self.with_body(body)
        field = orjson.dumps({name: value})[1:-1]
        raw = self.raw[:start] + field + b"," + self.raw[start:]
        return ChatRequest(body, raw, self.context, self.translated)

    @property
    def model(self) -> str:
        return str(self.body["model"])

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def legacy_functions(self) -> bool:
        """A legacy `functions` request, which gets legacy `function_call` answers."""
        return bool(self.body.get("functions")) and not self.body.get("tools")

    @property
    def include_usage(self) -> bool:
        options = self.body.get("stream_options") or {}
        return bool(options.get("include_usage"))
