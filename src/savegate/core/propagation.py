"""The W3C `traceparent` the upstream call under way carries: set by the tracer when an
attempt starts, in the request's own context, and read by the HTTP transport."""

from __future__ import annotations

from contextvars import ContextVar

UPSTREAM_TRACEPARENT: ContextVar[str | None] = ContextVar("upstream_traceparent", default=None)
