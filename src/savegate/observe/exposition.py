"""The Prometheus text exposition format (version 0.0.4), as `prometheus_client`'s
`generate_latest` writes it: a counter's samples named `…_total`, a histogram's
`…_bucket` (cumulative, with `le`), `…_count` and `…_sum`, each sample's labels sorted
by name, values as Go prints floats.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

Labels = tuple[str, ...]


def number(value: float) -> str:
    """A sample value as Go writes a float (`+Inf`, `NaN`, `1e+07`, `3.0`)."""
    value = float(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:  # Go switches to an exponent sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def _label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _sample(name: str, labels: Iterable[tuple[str, str]], value: float) -> str:
    pairs = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(labels))
    return f"{name}{{{pairs}}} {number(value)}\n" if pairs else f"{name} {number(value)}\n"


def _head(name: str, documentation: str, kind: str) -> list[str]:
    help_text = documentation.replace("\\", r"\\").replace("\n", r"\n")
    return [f"# HELP {name} {help_text}\n", f"# TYPE {name} {kind}\n"]


def simple(
    kind: str, name: str, documentation: str, labelnames: Labels, series: dict[Labels, float]
) -> list[str]:
    """A counter's or a gauge's lines."""
    if kind == "counter":
        name = name.removesuffix("_total") + "_total"
    lines = _head(name, documentation, kind)
    for values, value in series.items():
        lines.append(_sample(name, zip(labelnames, values, strict=True), value))
    return lines


def histogram(
    name: str,
    documentation: str,
    labelnames: Labels,
    bounds: Sequence[float],
    series: dict[Labels, tuple[list[int], float]],
) -> list[str]:
    """A histogram's lines: `series` holds counts per bucket (not cumulative; the last is
    +Inf) and the sum."""
    lines = _head(name, documentation, "histogram")
    les = [*(repr(float(bound)) for bound in bounds), "+Inf"]
    for values, (counts, total) in series.items():
        labels = list(zip(labelnames, values, strict=True))
        running = 0
        for le, count in zip(les, counts, strict=True):
            running += count
            lines.append(_sample(f"{name}_bucket", [*labels, ("le", le)], running))
        lines.append(_sample(f"{name}_count", labels, running))
        lines.append(_sample(f"{name}_sum", labels, total))
    return lines
