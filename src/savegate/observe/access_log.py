"""One access line per request, on the `savegate.access` logger: who asked (the key's id,
never its secret), for what, what served it, what came of it and how long it took.

The request path only hands the line's facts on (`observe.logs.defer`): the gateway's
sidecar, or without one the event loop in a batch, makes the line, masking the text
fields a client or an upstream chose, and writes it. Its fields are JSON keys in the
json format and `key=value` pairs in the text one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from savegate.observe import logs

if TYPE_CHECKING:  # the sidecar makes lines without the request's modules
    from savegate.core.request import RequestContext

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
    line's facts are read later, in a batch: the request is over, nothing changes them
    any more."""
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

    def facts(self) -> logs.Facts:
        """What the line says, as plain values (`line_of` makes the line of them)."""
        context = self.context
        attempt = None
        last = context.last_attempt if context is not None else None
        if context is not None and last is not None:
            used, target = last
            tokens = used.tokens
            attempt = (
                used.status,
                used.error_type,
                used.requested_model,
                used.model,
                used.provider,
                # No target: a cache hit, which no deployment served.
                (target.deployment if target is not None else None) or used.provider,
                context.outcome.attempts,
                tokens.prompt,
                tokens.completion,
                tokens.cached,
                used.ttft_ms,
                used.cache_hit,
            )
        key_id = context.key.id if context is not None else None
        return (
            self.created,
            self.request_id,
            self.method,
            self.path,
            self.status,
            self.seconds,
            self.stream,
            self.error,
            key_id,
            attempt,
        )

    def line(self) -> logs.Line:
        return line_of(self.facts())


def line_of(facts: logs.Facts) -> logs.Line:
    """The access line of `_Line.facts`: a stream's own end (an in-stream error, the
    client gone) replaces the 200 it was answered with."""
    created, request_id, method, path, status, seconds, stream, error, key_id, attempt = facts
    fields: dict[str, Any] = {
        "request_id": request_id,
        "method": method,
        "path": path,
        "key_id": key_id,
        "stream": stream,
    }
    if attempt is not None:
        (used_status, used_error, model, served, provider, deployment, attempts) = attempt[:7]
        prompt, completion, cached, ttft_ms, cache_hit = attempt[7:]
        if stream and used_status != 200:
            status, error = used_status, error or used_error
        # A literal merged, not keyword arguments: a line is made a request.
        fields |= {
            "model": model[:MAX_NAME],
            "served_model": (served or "")[:MAX_NAME] or None,
            "provider": provider,
            "deployment": deployment,
            "attempts": attempts,
            "tokens_in": prompt,
            "tokens_out": completion,
            "cached_tokens": cached,
            "ttft_ms": None if ttft_ms is None else round(ttft_ms, 1),
            "cache_hit": cache_hit,
        }
    fields["status"] = status
    fields["error"] = error
    fields["latency_ms"] = round(seconds * 1000, 1)
    return logs.Line(LOGGER, created, f"{method} {path} {status}", fields, _UNTRUSTED)
