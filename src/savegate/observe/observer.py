"""What watches every request: the metrics and the tracer, each when configured.

The HTTP surface reports a request's start and end (its `Outcome`), the meter each
upstream attempt's, admission its refusals. With neither metrics nor tracing configured
there is no observer at all, and nothing is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from urllib.parse import urlsplit

from savegate.config import Config
from savegate.core.outcome import Outcome
from savegate.metering.meter import AttemptMeter
from savegate.metering.sink import UsageSink
from savegate.observe import logs
from savegate.observe.metrics import GatewayMetrics
from savegate.observe.shared import WRITE_SECONDS, SnapshotDir
from savegate.observe.sidecar import Sidecar
from savegate.observe.tracing import Tracer
from savegate.routing.router import ModelRouter

log = logging.getLogger(__name__)

_GEN_AI_PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini"}


class Observer:
    def __init__(
        self,
        metrics: GatewayMetrics | None,
        tracer: Tracer | None,
        shared: SnapshotDir | None = None,
    ) -> None:
        self.metrics = metrics
        self.tracer = tracer
        self._shared = shared
        self._writer: asyncio.Task[None] | None = None

    def request_started(self, outcome: Outcome, traceparent: str | None) -> None:
        if self.tracer is not None:
            self.tracer.start_request(outcome, traceparent)

    def request_ended(self, outcome: Outcome, method: str) -> None:
        if self.metrics is not None:
            self.metrics.request_ended(outcome)
        if self.tracer is not None:
            self.tracer.end_request(outcome, method)

    def attempt_started(self, attempt: AttemptMeter) -> None:
        if self.metrics is not None:
            self.metrics.attempt_started(attempt)
        if self.tracer is not None:
            self.tracer.start_attempt(attempt)

    def attempt_ended(self, attempt: AttemptMeter) -> None:
        if self.metrics is not None:
            self.metrics.attempt_ended(attempt)
        if self.tracer is not None:
            self.tracer.end_attempt(attempt)

    def refused(self, error: Exception) -> None:
        if self.metrics is not None:
            self.metrics.refused(error)

    def exposition(self) -> bytes:
        """The metrics' text: this process's, or every worker's summed."""
        metrics = self.metrics
        assert metrics is not None
        self._sample()
        snapshot = metrics.registry.snapshot()
        if self._shared is None:
            return metrics.registry.render([(snapshot, True)])
        self._shared.write(os.getpid(), snapshot)  # what a scrape shows is in the files
        return metrics.registry.render(self._shared.read())

    def _sample(self) -> None:
        metrics = self.metrics
        assert metrics is not None
        metrics.sample()
        if self.tracer is not None:
            metrics.spans_exported.labels().value = self.tracer.exporter.exported
            metrics.spans_dropped.labels().value = self.tracer.exporter.dropped

    async def start(self) -> None:
        if self._shared is not None and self.metrics is not None:
            self._writer = asyncio.create_task(self._write_snapshots(), name="savegate-metrics")

    async def _write_snapshots(self) -> None:
        while True:
            await asyncio.sleep(WRITE_SECONDS)
            self._write()

    def _write(self) -> None:
        assert self._shared is not None and self.metrics is not None
        self._sample()
        try:
            self._shared.write(os.getpid(), self.metrics.registry.snapshot())
        except OSError as exc:
            log.warning("metrics: cannot write this worker's snapshot (%s)", exc)

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._write()  # the last figures of a worker that stops


def build_sidecar(config: Config) -> Sidecar:
    """The gateway process's sidecar: its access lines, and its spans when tracing."""
    tracing = config.tracing
    settings = None
    if tracing.enabled:
        settings = {
            "endpoint": tracing.endpoint,
            "headers": dict(tracing.headers),
            "service_name": tracing.service_name,
        }
    server = config.server
    return Sidecar(settings, logs.helper_arguments(server.log_level, server.log_format))


def build_observer(
    config: Config,
    router: ModelRouter,
    sink: UsageSink,
    metrics_dir: str | None,
    sidecar: Sidecar,
) -> Observer | None:
    metrics = GatewayMetrics(router, sink) if config.metrics.enabled else None
    tracer = _tracer(config, sidecar) if config.tracing.enabled else None
    if metrics is None and tracer is None:
        return None
    shared = SnapshotDir(metrics_dir) if metrics is not None and metrics_dir else None
    return Observer(metrics, tracer, shared)


def _tracer(config: Config, sidecar: Sidecar) -> Tracer:
    tracing = config.tracing
    providers: dict[str, tuple[str, str | None, int | None]] = {}
    for name, provider in config.providers.items():
        url = urlsplit(provider.base_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        providers[name] = (_GEN_AI_PROVIDERS[provider.type], url.hostname, port)
    return Tracer(
        sidecar,
        sample_ratio=tracing.sample_ratio,
        record_content=tracing.record_content,
        providers=providers,
    )
