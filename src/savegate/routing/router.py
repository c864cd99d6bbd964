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
from collections.abc import Callable
from dataclasses import dataclass, field

from savegate.core.errors import ModelNotFound
from savegate.core.route import Billing, Target
from savegate.core.usage import TokenCounts
from savegate.providers.base import ChatProvider
from savegate.routing.health import DeploymentHealth
from savegate.routing.strategies import CHEAPEST, STRATEGIES, Cost, cheapest

# What `tokens` cost on a target at the price paid (None: no price known), the public
# model name pricing a deployment name that has none of its own.
Quote = Callable[[Target, str, TokenCounts], float | None]


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

    def route(
        self, requested: str, peers: tuple[Target, ...] = (), fallback: bool = False
    ) -> Route:
        model = self.model or requested
        target = Target(self.provider.name, model, self.billing, peers, self.name, fallback)
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

    def ordered(self, now: float, cost: Cost | None = None) -> list[Deployment]:
        healthy = [d for d in self.deployments if d.health.available(now)]
        if self.strategy == CHEAPEST:
            ordered = cheapest(healthy, cost or (lambda deployment: None))
        else:
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
        quote: Quote | None = None,
    ) -> None:
        self._quote = quote
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

    def canonical(self, model: str) -> str:
        """The public name `model` stands for (itself, unless it is an alias)."""
        return self._aliases.get(model, model)

    def find(self, model: str) -> ModelGroup | None:
        model = self._aliases.get(model, model)
        group = self._exact.get(model)
        if group is not None:
            return group
        for pattern, candidate in self._wildcards:
            if pattern.match(model):
                return candidate
        return self._catch_all

    def plan(
        self,
        model: str,
        demand: TokenCounts | None = None,
        pin: Callable[[ChatProvider], bool] | None = None,
    ) -> list[Attempt]:
        """Every deployment worth trying for `model`, best first, fallbacks after.
        `demand`, the request's estimated tokens, prices it for `strategy: cheapest`;
        `pin` keeps it to the deployments it accepts, if the model has any."""
        group = self.find(model)
        if group is None:
            raise ModelNotFound(model)
        now = time.monotonic()
        name = self._aliases.get(model, model)
        attempts = self._attempts(group, name, now, demand)
        seen = {id(group)}
        for fallback in group.fallbacks:
            other = self.find(fallback)
            if other is None or id(other) in seen:
                continue
            seen.add(id(other))
            attempts += self._attempts(other, fallback, now, demand, fallback=True)
        if not attempts:
            # Everything is cooling down: try the group anyway rather than refuse.
            attempts = [Attempt(d, d.route(name)) for d in group.deployments]
        if pin is None:
            return attempts
        pinned = [a for a in attempts if pin(a.deployment.provider)]
        if not pinned:
            # Cooling down: tried anyway, for another would only say it cannot serve it.
            pinned = [Attempt(d, d.route(name)) for d in group.deployments if pin(d.provider)]
        return pinned or attempts

    def _attempts(
        self,
        group: ModelGroup,
        name: str,
        now: float,
        demand: TokenCounts | None,
        *,
        fallback: bool = False,
    ) -> list[Attempt]:
        if group.strategy != CHEAPEST:
            return [Attempt(d, d.route(name, fallback=fallback)) for d in group.ordered(now)]
        targets = {id(d): d.route(name).target for d in group.deployments}
        peers = tuple(targets.values())
        quote, tokens = self._quote, demand or TokenCounts()
        cost: Cost | None = None
        if quote is not None:
            cost = lambda deployment: quote(targets[id(deployment)], name, tokens)  # noqa: E731
        return [Attempt(d, d.route(name, peers, fallback)) for d in group.ordered(now, cost)]

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
