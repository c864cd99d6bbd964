"""How a model group orders its deployments for one request."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from savegate.routing.router import Deployment

Strategy = Callable[[Sequence["Deployment"]], list["Deployment"]]


def weighted(deployments: Sequence[Deployment]) -> list[Deployment]:
    """A random order where each deployment leads in proportion to its weight
    (Efraimidis-Spirakis keys: u ** (1 / w))."""
    return sorted(deployments, key=lambda d: random.random() ** (1 / d.weight), reverse=True)


def least_inflight(deployments: Sequence[Deployment]) -> list[Deployment]:
    """Fewest requests in flight per unit of weight first; ties broken at random."""
    return sorted(deployments, key=lambda d: (d.health.inflight / d.weight, random.random()))


def lowest_latency(deployments: Sequence[Deployment]) -> list[Deployment]:
    """Fastest recent time to first byte first; unmeasured deployments are tried first
    so that every one gets measured."""
    return sorted(
        deployments,
        key=lambda d: (d.health.latency if d.health.latency is not None else -1.0, random.random()),
    )


STRATEGIES: dict[str, Strategy] = {
    "weighted": weighted,
    "least_inflight": least_inflight,
    "lowest_latency": lowest_latency,
}
