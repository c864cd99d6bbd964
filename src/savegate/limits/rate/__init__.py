"""Per-key client rate limits: requests and tokens a minute, requests in flight.

Windows are exact sliding logs: a key with rpm=N is admitted at most N requests in any 60 s,
counted by admission time (tpm likewise, in tokens). Approximations such as a weighted pair of
fixed windows or a token bucket with a one-minute burst can admit up to twice the limit in
some 60 s span; a log costs memory per request in the window instead, which at per-key
limits is small.

    permit = await limiter.acquire(key.id, limits, estimated_tokens)  # or raises RateLimited
    try:
        ...  # run the request; send permit.headers() with the response
    finally:
        await permit.settle(actual_tokens)

In-process by default (`MemoryBackend`); `savegate.limits.rate.redis.RedisBackend` (needs the
redis package) shares limits across gateway processes, `DatabaseBackend` across the processes
of one database (several workers without Redis). All three admit by the same rule (`rules.py`).
"""

from savegate.limits.rate.backend import RateBackend
from savegate.limits.rate.database import DatabaseBackend
from savegate.limits.rate.duration import format_duration
from savegate.limits.rate.errors import RateLimited
from savegate.limits.rate.headers import rate_headers
from savegate.limits.rate.limiter import Permit, RateLimiter, create_rate_limiter
from savegate.limits.rate.memory import MemoryBackend
from savegate.limits.rate.model import Decision, Grant, LimitName, RateLimits, Usage

__all__ = [
    "DatabaseBackend",
    "Decision",
    "Grant",
    "LimitName",
    "MemoryBackend",
    "Permit",
    "RateBackend",
    "RateLimited",
    "RateLimiter",
    "RateLimits",
    "Usage",
    "create_rate_limiter",
    "format_duration",
    "rate_headers",
]
