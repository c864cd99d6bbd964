"""The gateway's metrics in memory: counters, gauges and histograms whose label children
are plain numbers, so that an observation on the request path is an addition.

Not `prometheus_client`'s: its values take a lock and, in its multiprocess mode, write a
memory-mapped file on every observation, which would cost more per request than the rest
of what the metrics do; and its modules (an HTTP server, WSGI, gzip among them) cost an
idle worker megabytes. Here each process adds to its own numbers and `snapshot()`s them
for the other workers (see `shared.py`), and a scrape renders the sum of every process's
snapshot in the text format (`exposition.py`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from savegate.observe import exposition

Labels = tuple[str, ...]
F = TypeVar("F", bound="Family")
# name → [[label values…], value] for counters and gauges, [[label values…], counts, sum]
# for histograms (counts per bucket, not cumulative; the last is +Inf)
Snapshot = dict[str, list[list[Any]]]

EXPOSITION_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
UPSTREAM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Value:
    """A counter's or a gauge's child."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0


class Buckets:
    """A histogram's child."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class Family:
    """One metric: its kind, help, label names, and a child per label values."""

    def __init__(
        self,
        kind: str,
        name: str,
        documentation: str,
        labelnames: Labels,
        buckets: Sequence[float] = (),
    ) -> None:
        self.kind = kind
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.buckets = tuple(buckets)
        self.children: dict[Labels, Any] = {}

    def _child(self, values: Labels) -> Any:
        child = self.children.get(values)
        if child is None:
            child = Buckets(self.buckets) if self.kind == "histogram" else Value()
            self.children[values] = child
        return child

    def snapshot(self) -> list[list[Any]]:
        if self.kind == "histogram":
            return [[list(k), list(c.counts), c.sum] for k, c in self.children.items()]
        return [[list(k), c.value] for k, c in self.children.items()]

    def render(self, series: dict[Labels, Any]) -> Iterable[str]:
        """The exposition lines of `series` (this family's values, summed over processes)."""
        if self.kind == "histogram":
            return exposition.histogram(
                self.name, self.documentation, self.labelnames, self.buckets, series
            )
        return exposition.simple(self.kind, self.name, self.documentation, self.labelnames, series)


class CounterFamily(Family):
    def __init__(self, name: str, documentation: str, labelnames: Labels = ()) -> None:
        super().__init__("counter", name, documentation, labelnames)

    def labels(self, *values: str) -> Value:
        child: Value = self._child(values)
        return child


class GaugeFamily(Family):
    def __init__(self, name: str, documentation: str, labelnames: Labels = ()) -> None:
        super().__init__("gauge", name, documentation, labelnames)

    def labels(self, *values: str) -> Value:
        child: Value = self._child(values)
        return child


class HistogramFamily(Family):
    def __init__(
        self, name: str, documentation: str, labelnames: Labels, buckets: Sequence[float]
    ) -> None:
        super().__init__("histogram", name, documentation, labelnames, buckets)

    def labels(self, *values: str) -> Buckets:
        child: Buckets = self._child(values)
        return child


class Registry:
    def __init__(self) -> None:
        self.families: list[Family] = []

    def counter(self, name: str, documentation: str, *labelnames: str) -> CounterFamily:
        return self._add(CounterFamily(name, documentation, labelnames))

    def gauge(self, name: str, documentation: str, *labelnames: str) -> GaugeFamily:
        return self._add(GaugeFamily(name, documentation, labelnames))

    def histogram(
        self, name: str, documentation: str, buckets: Sequence[float], *labelnames: str
    ) -> HistogramFamily:
        return self._add(HistogramFamily(name, documentation, labelnames, buckets))

    def _add(self, family: F) -> F:
        self.families.append(family)
        return family

    def snapshot(self) -> Snapshot:
        return {family.name: family.snapshot() for family in self.families if family.children}

    def render(self, snapshots: Iterable[tuple[Snapshot, bool]]) -> bytes:
        """The exposition text of the sum of `snapshots` (each with whether its process
        is alive: a dead process's counters still count, its gauges no longer do)."""
        snapshots = list(snapshots)
        lines: list[str] = []
        for family in self.families:
            series: dict[Labels, Any] = {}
            for snapshot, alive in snapshots:
                if family.kind == "gauge" and not alive:
                    continue
                for entry in snapshot.get(family.name, ()):
                    _add(series, family.kind, tuple(entry[0]), entry[1:])
            lines += family.render(series)  # with no series yet, its HELP and TYPE say it exists
        return "".join(lines).encode()


def _add(series: dict[Labels, Any], kind: str, labels: Labels, values: list[Any]) -> None:
    if kind != "histogram":
        series[labels] = series.get(labels, 0.0) + values[0]
        return
    counts, total = values
    known = series.get(labels)
    if known is not None:
        counts, total = [a + b for a, b in zip(known[0], counts, strict=True)], known[1] + total
    series[labels] = (counts, total)
