"""Model name → an ordered plan of deployments to try.

A public model name (exact, wildcard or alias) names a model group: several deployments
(provider, upstream model, upstream key, weight) plus fallback groups. For each request
the group's strategy orders its healthy deployments, steering away from keys the
upstream says are at their limit, and the fallback groups' deployments follow.
"""

from __future__ import annotations

import fnmatch
import re
import time
from dataclasses import dataclass, field

from savegate.core.errors import ModelNotFound
from savegate.core.route import Billing, Target
from savegate.providers.base import ChatProvider
from savegate.routing.health import DeploymentHealth
from savegate.routing.strategies import STRATEGIES


@dataclass(frozen=True, slots=True)
class Route:
    """A deployment chosen for one call: the adapter to call and what it is billed as."""

    provider: ChatProvider
    target: Target

    @property
    def upstream_model(self) -> str:
        return self.target.model


@dataclass(eq=False, slots=True)
class Deployment:
    name: str
    provider: ChatProvider
    health: DeploymentHealth
    model: str | None = None  # the upstream's name; None: the name the client asked for
    weight: float = 1.0
    billing: Billing = field(default_factory=Billing)

    def route(self, requested: str, fallback: bool = False) -> Route:
        model = self.model or requested
        target = Target(self.provider.name, model, self.billing, self.name, fallback)
        return Route(self.provider, target)


@dataclass(frozen=True, slots=True)
class Attempt:
    deployment: Deployment
    route: Route


@dataclass(slots=True)
class ModelGroup:
    pattern: str
    deployments: list[Deployment]
    strategy: str = "weighted"
    fallbacks: list[str] = field(default_factory=list)
    owned_by: str = "savegate"

    @property
    def is_wildcard(self) -> bool:
        return "*" in self.pattern or "?" in self.pattern

    def ordered(self, now: float) -> list[Deployment]:
        healthy = [d for d in self.deployments if d.health.available(now)]
        ordered = STRATEGIES[self.strategy](healthy)
        # Keys the upstream says are spent go last rather than first.
        return [d for d in ordered if not d.health.near_limit(now)] + [
            d for d in ordered if d.health.near_limit(now)
        ]


class ModelRouter:
    """Aliases first, then exact names, then wildcards in configuration order.

    `catch_all` serves every name nothing else matches (the embedded model when no real
    provider is configured).
    """

    def __init__(
        self,
        groups: list[ModelGroup],
        catch_all: ModelGroup | None = None,
        aliases: dict[str, str] | None = None,
    ) -> None:
        self._exact = {group.pattern: group for group in groups if not group.is_wildcard}
        self._wildcards = [
            (re.compile(fnmatch.translate(group.pattern)), group)
            for group in groups
            if group.is_wildcard
        ]
        self._aliases = aliases or {}
        self._catch_all = catch_all
        self._listed = [group for group in groups if not group.is_wildcard]
        if catch_all is not None and catch_all.pattern not in self._exact:
            self._listed.append(catch_all)

    def find(self, model: str) -> ModelGroup | None:
        model = self._aliases.get(model, model)
        group = self._exact.get(model)
        if group is not None:
            return group
        for pattern, candidate in self._wildcards:
            if pattern.match(model):
                return candidate
        return self._catch_all

    def plan(self, model: str) -> list[Attempt]:
        """Every deployment worth trying for `model`, best first, fallbacks after."""
        group = self.find(model)
        if group is None:
            raise ModelNotFound(model)
        now = time.monotonic()
        name = self._aliases.get(model, model)
        attempts = [Attempt(d, d.route(name)) for d in group.ordered(now)]
        seen = {id(group)}
        for fallback in group.fallbacks:
            other = self.find(fallback)
            if other is None or id(other) in seen:
                continue
            seen.add(id(other))
            attempts += [Attempt(d, d.route(fallback, True)) for d in other.ordered(now)]
        if not attempts:
            # Everything is cooling down: try the group anyway rather than refuse.
            attempts = [Attempt(d, d.route(name)) for d in group.deployments]
        return attempts

    def configured_name(self, model: str) -> str | None:
        """The configured name a requested one resolves to: itself when it is a group's
        or an alias, else the wildcard (or catch-all) group's pattern; None: no group."""
        if model in self._exact or model in self._aliases:
            return model
        group = self.find(model)
        return None if group is None else group.pattern

    def groups(self) -> list[ModelGroup]:
        """Every group, for the metrics of their deployments."""
        found = [*self._exact.values(), *(group for _, group in self._wildcards)]
        if self._catch_all is not None and self._catch_all not in found:
            found.append(self._catch_all)
        return found

    def listed(self) -> list[ModelGroup]:
        """Groups with a concrete name, for `GET /v1/models`."""
        return list(self._listed) + [
            ModelGroup(alias, [], owned_by=self.find(alias).owned_by)  # type: ignore[union-attr]
            for alias in self._aliases
            if alias not in self._exact and self.find(alias) is not None
        ]
