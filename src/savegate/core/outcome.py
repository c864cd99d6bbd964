"""What one HTTP request came to, filled in by the layers it passes through: the facts an
end-of-request observer (the metrics, an access log) reads once the answer is sent.

The HTTP surface creates it (endpoint, key) and sets the status it answered; the
pipeline names the model; the meter adds each upstream attempt (provider, deployment,
tokens, cost). Nothing here formats or stores anything: it is the seam, not a consumer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from savegate.core.usage import TokenCounts


@dataclass(slots=True)
class Outcome:
    request_id: str = ""
    endpoint: str = ""  # the route's path pattern, a bounded label
    started: float = 0.0  # time.perf_counter() when the request arrived
    key_id: str | None = None
    model: str | None = None  # the public model name the client asked for
    stream: bool = False
    provider: str | None = None  # of the last upstream attempt
    deployment: str | None = None
    attempts: int = 0
    status: int = 0  # HTTP status, or a stream's own end (499: the client left)
    error_type: str | None = None
    tokens: TokenCounts = field(default_factory=TokenCounts)  # every attempt, added up
    cost_usd: float = 0.0
    list_cost_usd: float = 0.0
    ttft: float | None = None  # seconds from arrival to a stream's first chunk
    upstream_seconds: float = 0.0  # waited on upstreams before the answer (or first chunk)
    span: Any = None  # the tracer's span for this request, when it is traced
