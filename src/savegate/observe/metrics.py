"""The gateway's Prometheus metrics: what each request and upstream attempt adds, and
what is read off the components (health, usage writer, store errors) when a snapshot is
taken.

On the request path an observation is a dictionary look-up of pre-bound children (per
endpoint, model and deployment) and a few additions; nothing is formatted. Label values
are bounded: the model label is the configured name a request resolved to (a wildcard
group's pattern, not the name a client made up), and error types past `MAX_VALUES`
distinct ones count as `other`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from savegate.core.faults import STORE_ERRORS
from savegate.core.outcome import Outcome
from savegate.metering.meter import AttemptMeter
from savegate.metering.sink import UsageSink
from savegate.observe.registry import LATENCY_BUCKETS, UPSTREAM_BUCKETS, Registry, Value
from savegate.routing.router import ModelRouter

MAX_VALUES = 200  # distinct values of a label fed by upstreams or clients
_CLASSES = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")
_STATES = ("healthy", "cooling_down", "half_open")


class _Bounded:
    """Values as they come until `MAX_VALUES` distinct ones, then `other`."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        label = self._seen.get(value)
        if label is None:
            label = value if len(self._seen) < MAX_VALUES else "other"
            if label != "other":
                self._seen[value] = label
        return label


class _ModelLabels:
    """The model label of a requested name: the configured name it resolves to (see
    `ModelRouter.configured_name`), or `unknown`."""

    def __init__(self, router: ModelRouter) -> None:
        self._router = router
        self._known: dict[str, str] = {}

    def __call__(self, name: str | None) -> str:
        if name is None:
            return ""
        label = self._known.get(name)
        if label is None:
            label = self._router.configured_name(name) or "unknown"
            if len(self._known) < 10 * MAX_VALUES:
                self._known[name] = label
        return label


class _RequestSeries:
    """The children one (endpoint, model, deployment, status class) adds to."""

    __slots__ = ("count", "duration", "overhead")

    def __init__(self, metrics: GatewayMetrics, outcome: Outcome) -> None:
        status_class = _CLASSES[min(outcome.status // 100, 5)]
        model = metrics.model_label(outcome.model)
        provider, deployment = outcome.provider or "", outcome.deployment or ""
        endpoint = outcome.endpoint
        self.count: Value = metrics.requests.labels(
            endpoint, model, provider, deployment, status_class
        )
        self.duration = metrics.duration.labels(endpoint, status_class)
        self.overhead = metrics.overhead.labels(endpoint)


class _AttemptSeries:
    """The children one (model, provider, deployment) adds to on every attempt."""

    __slots__ = ("cached", "cost", "input", "latency", "list_cost", "output", "reasoning", "ttft")

    def __init__(self, metrics: GatewayMetrics, model: str, provider: str, deployment: str):
        labels = (model, provider, deployment)
        self.input = metrics.input_tokens.labels(*labels)
        self.output = metrics.output_tokens.labels(*labels)
        self.cached = metrics.cached_tokens.labels(*labels)
        self.reasoning = metrics.reasoning_tokens.labels(*labels)
        self.cost = metrics.cost.labels(*labels)
        self.list_cost = metrics.list_cost.labels(*labels)
        self.latency = metrics.upstream_latency.labels(provider, deployment)
        self.ttft = metrics.ttft.labels(model, provider, deployment)


class GatewayMetrics:
    def __init__(self, router: ModelRouter, sink: UsageSink) -> None:
        self._router = router
        self._sink = sink
        self._model = _ModelLabels(router)
        self._error_type = _Bounded()
        self.in_flight: Callable[[], tuple[int, int]] = lambda: (0, 0)  # set by the server
        r = self.registry = Registry()
        request = ("endpoint", "model", "provider", "deployment", "status_class")
        self.requests = r.counter("savegate_requests", "Requests answered.", *request)
        self.errors = r.counter(
            "savegate_errors", "Requests that ended in an error, by type.", "endpoint", "type"
        )
        self.duration = r.histogram(
            "savegate_request_duration_seconds",
            "Time from a request's arrival to the end of its answer.",
            UPSTREAM_BUCKETS,
            "endpoint",
            "status_class",
        )
        self.overhead = r.histogram(
            "savegate_gateway_overhead_seconds",
            "Latency the gateway added to a successful request: its time to the answer "
            "(a stream's first chunk) less the time spent waiting on upstreams.",
            LATENCY_BUCKETS,
            "endpoint",
        )
        attempt = ("model", "provider", "deployment")
        self.upstream_latency = r.histogram(
            "savegate_upstream_latency_seconds",
            "Time an upstream attempt took to answer (a stream: to its first chunk).",
            UPSTREAM_BUCKETS,
            "provider",
            "deployment",
        )
        self.ttft = r.histogram(
            "savegate_time_to_first_token_seconds",
            "Time from a stream request's arrival to its first chunk.",
            UPSTREAM_BUCKETS,
            *attempt,
        )
        self.input_tokens = r.counter("savegate_input_tokens", "Prompt tokens.", *attempt)
        self.output_tokens = r.counter("savegate_output_tokens", "Completion tokens.", *attempt)
        self.cached_tokens = r.counter(
            "savegate_cached_input_tokens", "Prompt tokens read from a cache.", *attempt
        )
        self.reasoning_tokens = r.counter(
            "savegate_reasoning_tokens", "Completion tokens spent reasoning.", *attempt
        )
        self.cost = r.counter("savegate_cost_usd", "Cost at the price paid, USD.", *attempt)
        self.list_cost = r.counter("savegate_list_cost_usd", "Cost at list price, USD.", *attempt)
        self.attempts = r.counter(
            "savegate_upstream_attempts",
            "Upstream calls, by how they ended.",
            "provider",
            "deployment",
            "status_class",
        )
        self.retries = r.counter(
            "savegate_retries", "Upstream attempts after a request's first.", "model"
        )
        self.fallbacks = r.counter(
            "savegate_fallbacks", "Upstream attempts on a fallback model group.", "model"
        )
        self.refusals = r.counter(
            "savegate_limit_refusals",
            "Requests refused by a key's rate limits or budget, by the limit.",
            "limit",
        )
        self.requests_in_flight = r.gauge("savegate_requests_in_flight", "Requests being served.")
        self.streams_in_flight = r.gauge("savegate_streams_in_flight", "Streams being relayed.")
        deployment = ("model", "provider", "deployment")
        self.deployment_state = r.gauge(
            "savegate_deployment_state",
            "Workers that see a deployment in each health state.",
            *deployment,
            "state",
        )
        self.deployment_in_flight = r.gauge(
            "savegate_deployment_in_flight", "Upstream calls in flight.", *deployment
        )
        self.cooldowns = r.counter(
            "savegate_deployment_cooldowns", "Times a deployment was cooled down.", *deployment
        )
        self.usage_backlog = r.gauge(
            "savegate_usage_backlog_rows", "Usage rows waiting to be written."
        )
        self.usage_flushes = r.counter("savegate_usage_flushes", "Batches of usage rows written.")
        self.usage_written = r.counter("savegate_usage_rows_written", "Usage rows written.")
        self.usage_dropped = r.counter(
            "savegate_usage_rows_dropped", "Usage rows dropped: the buffer was full."
        )
        self.usage_rejected = r.counter(
            "savegate_usage_rows_rejected", "Usage rows the database refused (usage_rejected)."
        )
        self.store_errors = r.counter(
            "savegate_store_errors", "Errors of the database or Redis.", "store", "component"
        )
        self.spans_exported = r.counter("savegate_trace_spans_exported", "Trace spans sent.")
        self.spans_dropped = r.counter(
            "savegate_trace_spans_dropped", "Trace spans dropped: queue full or export failed."
        )
        self._requests: dict[tuple[Any, ...], _RequestSeries] = {}
        self._attempts: dict[tuple[str, str, str], _AttemptSeries] = {}

    def swap_router(self, router: ModelRouter) -> None:
        """A reload: model labels and deployment health from the new routes."""
        self._router = router
        self._model = _ModelLabels(router)

    def request_ended(self, outcome: Outcome) -> None:
        status = outcome.status
        key = (outcome.endpoint, outcome.model, outcome.provider, outcome.deployment, status // 100)
        series = self._requests.get(key)
        if series is None:
            series = self._requests[key] = _RequestSeries(self, outcome)
        series.count.value += 1
        now = time.perf_counter()
        series.duration.observe(now - outcome.started)
        if outcome.error_type is not None:
            self.errors.labels(outcome.endpoint, self._error_type(outcome.error_type)).value += 1
        elif outcome.attempts and status < 400:
            answered = outcome.ttft if outcome.ttft is not None else now - outcome.started
            series.overhead.observe(max(0.0, answered - outcome.upstream_seconds))

    def model_label(self, name: str | None) -> str:
        return self._model(name)

    def attempt_started(self, attempt: AttemptMeter) -> None:
        target = attempt.target
        if target.fallback:
            self.fallbacks.labels(self._model(attempt.request.model)).value += 1
        if attempt.request.context.outcome.attempts > 1:
            self.retries.labels(self._model(attempt.request.model)).value += 1

    def attempt_ended(self, attempt: AttemptMeter) -> None:
        record = attempt.record
        provider = record.provider or ""
        deployment = attempt.target.deployment
        key = (record.requested_model, provider, deployment)
        series = self._attempts.get(key)
        if series is None:
            model = self._model(record.requested_model)
            series = self._attempts[key] = _AttemptSeries(self, model, provider, deployment)
        tokens = record.tokens
        series.input.value += tokens.prompt
        series.output.value += tokens.completion
        if tokens.cached:
            series.cached.value += tokens.cached
        if tokens.reasoning:
            series.reasoning.value += tokens.reasoning
        series.cost.value += record.cost_usd
        series.list_cost.value += record.list_cost_usd
        first = attempt.first_byte_at
        series.latency.observe((first or attempt.ended_at) - attempt.began)
        if first is not None:
            series.ttft.observe(first - attempt.request.context.started)
        status_class = _CLASSES[min(record.status // 100, 5)]
        self.attempts.labels(provider, deployment, status_class).value += 1

    def refused(self, error: Exception) -> None:
        limit = getattr(error, "limit", None) or getattr(error, "code", None) or "other"
        self.refusals.labels(str(limit)).value += 1

    def sample(self) -> None:
        """Read what the components count themselves into the gauges and counters."""
        requests, streams = self.in_flight()
        self.requests_in_flight.labels().value = requests
        self.streams_in_flight.labels().value = streams
        now = time.monotonic()
        for group in self._router.groups():
            for deployment in group.deployments:
                labels = (group.pattern, deployment.provider.name, deployment.name)
                health = deployment.health
                state = health.state(now)
                for name in _STATES:
                    self.deployment_state.labels(*labels, name).value = float(name == state)
                self.deployment_in_flight.labels(*labels).value = health.inflight
                self.cooldowns.labels(*labels).value = health.cooldowns
        sink = self._sink
        self.usage_backlog.labels().value = sink.pending
        self.usage_flushes.labels().value = sink.flushes
        self.usage_written.labels().value = sink.written
        self.usage_dropped.labels().value = sink.dropped
        self.usage_rejected.labels().value = sink.rejected
        for (store, component), count in STORE_ERRORS.items():
            self.store_errors.labels(store, component).value = count
