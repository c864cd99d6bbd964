"""One access line per request, on the `savegate.access` logger: who asked (the key's id,
never its secret), for what, what served it, what came of it and how long it took.

The request path only hands the line's facts to the log writer (`observe.logs.defer`):
its thread makes the line and writes it, masking the text fields a client or an upstream
chose. Its fields are JSON keys in the json format and `key=value` pairs in the text one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from savegate.core.request import RequestContext
from savegate.observe import logs

LOGGER = "savegate.access"
_log = logging.getLogger(LOGGER)
MAX_NAME = 256  # a model name is the client's: a line need not carry a huge one
# What a client or an upstream chose; the other fields are the gateway's own.
_UNTRUSTED = ("path", "model", "served_model", "error")


def write(
    *,
    request_id: str,
    method: str,
    path: str,
    status: int,
    started: float,
    stream: bool,
    error: str | None,
    context: RequestContext | None,
) -> None:
    """`status` is the HTTP status answered; a stream's own end (an in-stream error, the
    client gone) replaces its 200. `started` is `time.perf_counter()` at arrival. The
    line's fields are read by the writer thread: the request is over, nothing changes
    them any more."""
    if _log.isEnabledFor(logging.INFO):
        ended = time.perf_counter()
        logs.defer(
            _Line(
                time.time(),
                request_id,
                method,
                path,
                status,
                ended - started,
                stream,
                error,
                context,
            )
        )


@dataclass(slots=True)
class _Line:
    created: float
    request_id: str
    method: str
    path: str
    status: int
    seconds: float
    stream: bool
    error: str | None
    context: RequestContext | None

    def line(self) -> logs.Line:
        context, status, error = self.context, self.status, self.error
        fields: dict[str, Any] = {
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "key_id": context.key.id if context is not None else None,
            "stream": self.stream,
        }
        last = context.last_attempt if context is not None else None
        if context is not None and last is not None:
            used, target = last
            if self.stream and used.status != 200:
                status, error = used.status, error or used.error_type
            tokens = used.tokens
            # A literal merged, not keyword arguments: a line is made a request.
            fields |= {
                "model": used.requested_model[:MAX_NAME],
                "served_model": (used.model or "")[:MAX_NAME] or None,
                "provider": used.provider,
                # No target: a cache hit, which no deployment served.
                "deployment": (target.deployment if target is not None else None) or used.provider,
                "attempts": context.outcome.attempts,
                "tokens_in": tokens.prompt,
                "tokens_out": tokens.completion,
                "cached_tokens": tokens.cached,
                "ttft_ms": None if used.ttft_ms is None else round(used.ttft_ms, 1),
                "cache_hit": used.cache_hit,
            }
        fields["status"] = status
        fields["error"] = error
        fields["latency_ms"] = round(self.seconds * 1000, 1)
        message = f"{self.method} {self.path} {status}"
        return logs.Line(LOGGER, self.created, message, fields, _UNTRUSTED)
