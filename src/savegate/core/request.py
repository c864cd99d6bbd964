"""What a request carries through the pipeline once the HTTP layer has parsed it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from savegate.core.keys import ApiKey
from savegate.core.outcome import Outcome


@dataclass(slots=True)
class RequestContext:
    request_id: str
    key: ApiKey
    started: float = field(default_factory=time.perf_counter)
    outcome: Outcome = field(default_factory=Outcome)  # what the request came to, so far


@dataclass(slots=True)
class ChatRequest:
    """A validated chat completion request in the OpenAI dialect (our neutral form)."""

    body: dict[str, Any]
    raw: bytes
    context: RequestContext

    def with_body(self, body: dict[str, Any]) -> ChatRequest:
        """The same request with another body (serialised once, here)."""
        return ChatRequest(body, orjson.dumps(body), self.context)

    def with_field(self, name: str, value: Any) -> ChatRequest:
        """The same request with one top-level field set. A new field is spliced into
        the client's own bytes: a long conversation is not serialised again."""
        body = {**self.body, name: value}
        start = self.raw.find(b"{") + 1
        if name in self.body or not start or self.raw[start:].lstrip().startswith(b"}"):
            return self.with_body(body)
        field = orjson.dumps({name: value})[1:-1]
        return ChatRequest(body, self.raw[:start] + field + b"," + self.raw[start:], self.context)

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
