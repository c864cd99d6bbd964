"""Model name → the provider and upstream model that serve it."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from savegate.core.errors import ModelNotFound
from savegate.metering.prices import ModelPrice
from savegate.providers.base import ChatProvider


@dataclass(frozen=True, slots=True)
class Billing:
    """What a deployment costs: list price less `discount`, or explicit `paid` prices."""

    discount: float = 0.0
    paid: dict[str, ModelPrice] = field(default_factory=dict)
    free: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    provider: ChatProvider
    upstream_model: str
    billing: Billing = Billing()


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One public name or wildcard pattern and who serves it."""

    pattern: str
    provider: ChatProvider
    upstream: str | None = None
    owned_by: str = "savegate"
    billing: Billing = Billing()

    @property
    def is_wildcard(self) -> bool:
        return "*" in self.pattern or "?" in self.pattern


class ModelRouter:
    """Exact names win over wildcards; wildcards are tried in configuration order.

    `catch_all` serves every name no entry matches (the embedded model when no real
    provider is configured).
    """

    def __init__(self, entries: list[ModelEntry], catch_all: ModelEntry | None = None) -> None:
        self._exact = {entry.pattern: entry for entry in entries if not entry.is_wildcard}
        self._wildcards = [
            (re.compile(fnmatch.translate(entry.pattern)), entry)
            for entry in entries
            if entry.is_wildcard
        ]
        self._catch_all = catch_all
        self._listed = [entry for entry in entries if not entry.is_wildcard]
        if catch_all is not None and catch_all.pattern not in self._exact:
            self._listed.append(catch_all)

    def resolve(self, model: str) -> Route:
        entry = self.find(model)
        if entry is None:
            raise ModelNotFound(model)
        return Route(entry.provider, entry.upstream or model, entry.billing)

    def find(self, model: str) -> ModelEntry | None:
        entry = self._exact.get(model)
        if entry is not None:
            return entry
        for pattern, candidate in self._wildcards:
            if pattern.match(model):
                return candidate
        return self._catch_all

    def listed(self) -> list[ModelEntry]:
        """Entries with a concrete name, for `GET /v1/models`."""
        return list(self._listed)
