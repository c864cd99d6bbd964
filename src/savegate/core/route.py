"""Where one upstream call goes and how it is billed: the value routing hands to metering."""

from __future__ import annotations

from dataclasses import dataclass, field

from savegate.core.prices import ModelPrice


@dataclass(frozen=True, slots=True)
class Billing:
    """What a deployment costs: list price less `discount`, or explicit `paid` prices."""

    discount: float = 0.0
    paid: dict[str, ModelPrice] = field(default_factory=dict)
    free: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """One deployment as billing sees it: the provider's name, the model name it is sent
    (the upstream's own), and its prices; and, for the metrics, the deployment's name and
    whether it serves a fallback group."""

    provider: str
    model: str
    billing: Billing = field(default_factory=Billing)
    deployment: str = ""
    fallback: bool = False
