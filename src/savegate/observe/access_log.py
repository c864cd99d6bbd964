"""One access line per request, on the `savegate.access` logger: who asked (the key's id,
never its secret), for what, what served it, what came of it and how long it took.

The line is handed to the log queue (`observe.logs`) as a record made here, not through
the record factory: nothing in it needs masking before it is formatted, and the writer
thread masks the formatted line anyway. Its fields are the record's extras, so they are
JSON keys in the json format and `key=value` pairs in the text one.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from savegate.core.request import RequestContext
from savegate.metering.meter import AttemptMeter

LOGGER = "savegate.access"
_log = logging.getLogger(LOGGER)


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
    client gone) replaces its 200. `started` is `time.perf_counter()` at arrival."""
    if not _log.isEnabledFor(logging.INFO):
        return
    fields: dict[str, Any] = {
        "request_id": request_id,
        "method": method,
        "path": path,
        "key_id": context.key.id if context is not None else None,
        "stream": stream,
    }
    attempt = context.last_attempt if context is not None else None
    if isinstance(attempt, AttemptMeter):
        used = attempt.record
        if stream and used.status != 200:
            status, error = used.status, error or used.error_type
        fields.update(
            model=used.requested_model,
            served_model=used.model,
            provider=used.provider,
            deployment=attempt.target.deployment or used.provider,
            attempts=context.attempts if context is not None else 0,
            tokens_in=used.tokens.prompt,
            tokens_out=used.tokens.completion,
            cached_tokens=used.tokens.cached,
            ttft_ms=None if used.ttft_ms is None else round(used.ttft_ms, 1),
            cache_hit=used.cache_hit,
        )
    fields["status"] = status
    fields["error"] = error
    fields["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    record = logging.LogRecord(
        LOGGER, logging.INFO, __file__, 0, "%s %s %d", (method, path, status), None
    )
    record.__dict__.update(fields)
    _log.handle(record)
