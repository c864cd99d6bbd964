"""The 429 a client sees when one of its key's rate limits is full."""

from __future__ import annotations

import math

from savegate.core.errors import GatewayError
from savegate.limits.rate.duration import format_duration
from savegate.limits.rate.headers import rate_headers
from savegate.limits.rate.model import LimitName, RateLimits, Usage

_LABELS: dict[LimitName, str] = {
    "rpm": "requests per minute (rpm)",
    "tpm": "tokens per minute (tpm)",
    "max_concurrent": "concurrent requests (max_concurrent)",
}


class RateLimited(GatewayError):
    """`limit` names the limit that tripped; `retry_after` is seconds until a request like this
    one would be admitted (for max_concurrent only a hint: slots free when requests finish)."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(
        self,
        limit: LimitName,
        retry_after: float,
        *,
        limits: RateLimits,
        usage: Usage,
        requested_tokens: int = 0,
    ) -> None:
        self.limit: LimitName = limit
        self.retry_after = max(0.0, retry_after)
        self.limit_value: int = getattr(limits, limit)
        self.used = {"rpm": usage.requests, "tpm": usage.tokens}.get(limit, usage.in_flight)
        headers = rate_headers(limits, usage)
        headers["retry-after"] = str(max(1, math.ceil(self.retry_after)))
        headers["retry-after-ms"] = str(math.ceil(round(self.retry_after * 1_000_000) / 1000))
        super().__init__(self._message(requested_tokens), headers=headers)

    def _message(self, requested_tokens: int) -> str:
        label = _LABELS[self.limit]
        if self.limit == "tpm" and requested_tokens > self.limit_value:
            return (
                f"Request too large for {label}: limit {self.limit_value}, requested "
                f"{requested_tokens}. Reduce the prompt or max_tokens and try again."
            )
        requested = f", requested {requested_tokens}" if self.limit == "tpm" else ""
        return (
            f"Rate limit reached for {label}: limit {self.limit_value}, used {self.used}"
            f"{requested}. Please try again in {format_duration(self.retry_after)}."
        )
