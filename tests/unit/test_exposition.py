"""The metrics' text exposition is the one `prometheus_client` writes, byte for byte (its
library stays out of the gateway: tests/unit/test_start_imports.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from savegate.observe.registry import Registry

_ODD = 'a "quoted"\\ back\nline'


def _filled() -> Registry:
    registry = Registry()
    requests = registry.counter("savegate_requests", "Requests answered.", "model", "status")
    requests.labels("gpt-4o", "200").value = 41
    requests.labels(_ODD, "500").value = 12345678.0
    registry.counter("savegate_unused_total", "Never touched.\\ Help with a\nnewline.")
    inflight = registry.gauge("savegate_inflight", "In flight.")
    inflight.labels().value = 3
    cost = registry.gauge("savegate_cost", "Dollars.", "key")
    cost.labels("k1").value = 0.000123
    cost.labels("k2").value = 1e-9
    latency = registry.histogram("savegate_latency", "Seconds.", (0.001, 0.5, 10.0), "zone", "a")
    for seconds in (0.0005, 0.2, 0.2, 7.0, 99.0):
        latency.labels("eu", "x").observe(seconds)
    latency.labels("us", _ODD).observe(0.0001)
    return registry


class _Reference:
    """The same figures through prometheus_client's own families."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.families:
            names = list(family.labelnames)
            metric: Any
            if family.kind == "histogram":
                metric = HistogramMetricFamily(family.name, family.documentation, labels=names)
                bounds = [*(repr(float(b)) for b in family.buckets), "+Inf"]
                for labels, child in family.children.items():
                    running, cumulative = 0, []
                    for bound, count in zip(bounds, child.counts, strict=True):
                        running += count
                        cumulative.append((bound, running))
                    metric.add_metric(list(labels), cumulative, child.sum)
            else:
                kind = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
                metric = kind(family.name, family.documentation, labels=names)
                for labels, child in family.children.items():
                    metric.add_metric(list(labels), child.value)
            yield metric


def test_the_text_is_prometheus_clients():
    registry = _filled()
    reference = CollectorRegistry(auto_describe=False)
    reference.register(_Reference(registry))  # type: ignore[arg-type]
    assert registry.render([(registry.snapshot(), True)]) == generate_latest(reference)


def test_snapshots_add_up_and_a_dead_process_keeps_only_its_counters():
    registry = _filled()
    other = Registry()
    other.counter("savegate_requests", "Requests answered.", "model", "status").labels(
        "gpt-4o", "200"
    ).value = 1
    other.gauge("savegate_inflight", "In flight.").labels().value = 100
    text = registry.render([(registry.snapshot(), True), (other.snapshot(), False)]).decode()
    assert 'savegate_requests_total{model="gpt-4o",status="200"} 42.0\n' in text
    assert "savegate_inflight 3.0\n" in text
    assert 'savegate_latency_bucket{a="x",le="0.5",zone="eu"} 3.0\n' in text
    assert 'savegate_latency_count{a="x",zone="eu"} 5.0\n' in text
