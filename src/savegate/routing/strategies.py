"""How a model group orders its deployments for one request."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from savegate.routing.router import Deployment

Strategy = Callable[[Sequence["Deployment"]], list["Deployment"]]
Cost = Callable[["Deployment"], "float | None"]  # a request's price on a deployment
CHEAPEST = "cheapest"


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


def cheapest(deployments: Sequence[Deployment], cost: Cost) -> list[Deployment]:
    """Lowest price for the request first, unpriced deployments last; equal prices by
    recent time to first byte (unmeasured first, as in `lowest_latency`), then weight."""

    def key(deployment: Deployment) -> tuple[bool, float, float, float, float]:
        price = cost(deployment)
        latency = deployment.health.latency
        return (
            price is None,
            round(price, 12) if price is not None else 0.0,  # float noise is no difference
            latency if latency is not None else -1.0,
            -deployment.weight,
            random.random(),
        )

    return sorted(deployments, key=key)


# The strategies that need nothing of the request; `cheapest` needs its price.
STRATEGIES: dict[str, Strategy] = {
    "weighted": weighted,
    "least_inflight": least_inflight,
    "lowest_latency": lowest_latency,
}
