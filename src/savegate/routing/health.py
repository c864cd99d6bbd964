"""What the router knows about each deployment: load, speed, failures, upstream limits.

A deployment that keeps failing is taken out for a cooldown (circuit open); once the
cooldown is over one request probes it (half-open) and its outcome decides. An upstream
429 with `retry-after` cools the deployment for that long. The upstream's own
`x-ratelimit-remaining-*` headers (or Anthropic's) let the router steer away from a key
before it hits its limit.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import datetime

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset(value: str | None, now: float) -> float | None:
    """Seconds until an upstream limit resets: `6m0s`, `12ms`, `1.5s` (OpenAI) or an
    RFC 3339 time (Anthropic)."""
    if not value:
        return None
    parts = _DURATION.findall(value)
    if parts and "".join(f"{n}{u}" for n, u in parts) == value:
        return sum(float(n) * _UNITS[u] for n, u in parts)
    try:
        return max(0.0, datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() - now)
    except ValueError:
        return None


def _header_int(headers: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            try:
                return int(float(value))
            except ValueError:
                return None
    return None


class DeploymentHealth:
    def __init__(self, failure_threshold: int, cooldown_seconds: float) -> None:
        self._threshold = failure_threshold
        self._cooldown = cooldown_seconds
        self.inflight = 0
        self.failures = 0
        self.latency: float | None = None  # moving average of time to first byte, seconds
        self.cooldown_until = 0.0
        self.probing = False
        self.remaining_requests: int | None = None
        self.remaining_tokens: int | None = None
        self.limits_reset_at = 0.0
        self.cooldowns = 0  # times it was taken out of rotation, for the metrics

    def state(self, now: float) -> str:
        """`cooling_down` (out of rotation), `half_open` (a probe decides), or `healthy`."""
        if now < self.cooldown_until:
            return "cooling_down"
        return "half_open" if self.failures >= self._threshold else "healthy"

    def available(self, now: float) -> bool:
        """In rotation: not cooling down, or cooled down and nobody probing yet."""
        if now >= self.cooldown_until:
            return not (self.failures >= self._threshold and self.probing)
        return False

    def near_limit(self, now: float) -> bool:
        """The upstream said this key has (almost) nothing left until its reset."""
        if now >= self.limits_reset_at:
            return False
        requests_left = self.remaining_requests
        tokens_left = self.remaining_tokens
        return (requests_left is not None and requests_left <= self.inflight) or (
            tokens_left is not None and tokens_left <= 0
        )

    def begin(self) -> None:
        """An attempt starts; it counts as in flight until `failed` or `released`."""
        self.inflight += 1
        if self.failures >= self._threshold:
            self.probing = True  # half-open: this request is the probe

    def answered(self, first_byte_seconds: float) -> None:
        """The attempt got its answer, or a stream its first chunk: the deployment is
        healthy. A stream stays in flight until it ends."""
        self.failures = 0
        self.probing = False
        self.cooldown_until = 0.0
        self.latency = (
            first_byte_seconds
            if self.latency is None
            else 0.8 * self.latency + 0.2 * first_byte_seconds
        )

    def failed(self, retry_after: float | None, now: float) -> None:
        self.inflight -= 1
        self.failures += 1
        self.probing = False
        cooling = now < self.cooldown_until
        if retry_after:
            self.cooldown_until = max(self.cooldown_until, now + retry_after)
        if self.failures >= self._threshold:
            self.cooldown_until = max(self.cooldown_until, now + self._cooldown)
        if not cooling and now < self.cooldown_until:
            self.cooldowns += 1

    def released(self) -> None:
        """The attempt is over: answered, or ended without a verdict (client went away,
        bad request)."""
        self.inflight -= 1
        self.probing = False

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read the upstream's rate-limit headers from any response."""
        now = time.monotonic()
        requests_left = _header_int(
            headers, "x-ratelimit-remaining-requests", "anthropic-ratelimit-requests-remaining"
        )
        tokens_left = _header_int(
            headers, "x-ratelimit-remaining-tokens", "anthropic-ratelimit-tokens-remaining"
        )
        if requests_left is None and tokens_left is None:
            return
        self.remaining_requests = requests_left
        self.remaining_tokens = tokens_left
        resets = [
            parse_reset(headers.get(name), time.time())
            for name in (
                "x-ratelimit-reset-requests",
                "x-ratelimit-reset-tokens",
                "anthropic-ratelimit-requests-reset",
                "anthropic-ratelimit-tokens-reset",
            )
        ]
        known = [reset for reset in resets if reset is not None]
        self.limits_reset_at = now + (max(known) if known else 60.0)
