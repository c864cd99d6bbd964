"""Durations the way OpenAI writes them in x-ratelimit-reset-* headers and messages: Go style."""

from __future__ import annotations

import math


def format_duration(seconds: float) -> str:
    """`12ms`, `1.2s`, `6m0s`, `1h0m0s`; rounded up to the millisecond so a client never retries
    too early."""
    if seconds <= 0:
        return "0s"
    # Round to the microsecond first so float noise (1.2 * 1000 = 1200.0000000000002) is not
    # rounded up a whole millisecond.
    ms = math.ceil(round(seconds * 1_000_000) / 1000)
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0") if frac else str(whole)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
