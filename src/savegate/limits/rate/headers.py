"""OpenAI's x-ratelimit-* response headers, for the limits a key has."""

from __future__ import annotations

from savegate.limits.rate.duration import format_duration
from savegate.limits.rate.model import RateLimits, Usage


def rate_headers(limits: RateLimits, usage: Usage | None) -> dict[str, str]:
    """Reset is the time until the oldest counted request (or tokens) leaves the sliding window,
    i.e. when `remaining` next grows; that is what a client out of room needs to wait for."""
    if usage is None:
        return {}
    headers: dict[str, str] = {}
    if limits.rpm is not None:
        headers["x-ratelimit-limit-requests"] = str(limits.rpm)
        headers["x-ratelimit-remaining-requests"] = str(max(0, limits.rpm - usage.requests))
        headers["x-ratelimit-reset-requests"] = format_duration(usage.requests_reset)
    if limits.tpm is not None:
        headers["x-ratelimit-limit-tokens"] = str(limits.tpm)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, limits.tpm - usage.tokens))
        headers["x-ratelimit-reset-tokens"] = format_duration(usage.tokens_reset)
    return headers
