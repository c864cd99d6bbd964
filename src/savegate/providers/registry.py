"""The one place that knows provider types by name: builds the adapters (one per
upstream key, sharing their provider's connection pool) and the model groups."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from savegate.config import Config, ProviderConfig
from savegate.providers.anthropic import AnthropicProvider
from savegate.providers.base import ChatProvider
from savegate.providers.gemini import GeminiProvider
from savegate.providers.http import HttpUpstream
from savegate.providers.openai_compat import OpenAICompatProvider
from savegate.routing.health import DeploymentHealth
from savegate.routing.router import Billing, Deployment, ModelGroup, ModelRouter

Adapter = Callable[[str, HttpUpstream, str | None, Callable[[httpx.Headers], None]], ChatProvider]

PROVIDER_TYPES: dict[str, Adapter] = {
    "openai": OpenAICompatProvider,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
}


@dataclass
class Providers:
    """Everything built from the config that must be started and closed."""

    router: ModelRouter
    adapters: list[ChatProvider] = field(default_factory=list)
    transports: list[HttpUpstream] = field(default_factory=list)


def _deployments(
    name: str, config: ProviderConfig, http: HttpUpstream, config_all: Config
) -> list[Deployment]:
    """One deployment per upstream key: pooled keys are balanced like any deployments."""
    routing = config_all.routing
    billing = Billing(config.discount, dict(config.prices))
    keys: list[str | None] = list(config.api_keys()) or [None]
    deployments = []
    for index, key in enumerate(keys):
        health = DeploymentHealth(routing.failure_threshold, routing.cooldown_seconds)
        adapter = PROVIDER_TYPES[config.type](name, http, key, health.observe)
        label = name if len(keys) == 1 else f"{name}#{index + 1}"
        deployments.append(Deployment(label, adapter, health, billing=billing))
    return deployments


def build_providers(config: Config) -> Providers:
    """With no provider configured the embedded model answers every model name; once real
    providers exist it answers only to its own name."""
    built = Providers(ModelRouter([]))
    by_provider: dict[str, list[Deployment]] = {}
    for name, provider_config in config.providers.items():
        http = HttpUpstream(name, provider_config)
        built.transports.append(http)
        by_provider[name] = _deployments(name, provider_config, http, config)
        built.adapters.extend(d.provider for d in by_provider[name])
    groups: dict[str, ModelGroup] = {}
    for name, provider_config in config.providers.items():
        for route in provider_config.models:
            group = groups.setdefault(
                route.name, ModelGroup(route.name, [], config.routing.strategy, owned_by=name)
            )
            group.deployments += [_copy(d, route.upstream) for d in by_provider[name]]
    for public, group_config in config.models.items():
        deployments = [
            _copy(d, deployment.model, deployment.weight)
            for deployment in group_config.deployments
            for d in by_provider[deployment.provider]
        ]
        groups[public] = ModelGroup(
            public,
            deployments,
            group_config.strategy or config.routing.strategy,
            list(group_config.fallbacks),
            owned_by=group_config.deployments[0].provider,
        )
    catch_all: ModelGroup | None = None
    if config.local.enabled:
        # Imported here so a gateway without the embedded model never loads llama.cpp.
        from savegate.providers.local import LocalProvider

        local = LocalProvider(config.local)
        built.adapters.append(local)
        health = DeploymentHealth(config.routing.failure_threshold, 0.0)
        own = ModelGroup(
            config.local.name,
            [Deployment("local", local, health, config.local.name, billing=Billing(free=True))],
            owned_by="savegate-local",
        )
        if groups:
            groups[own.pattern] = own
        else:
            catch_all = own
    built.router = ModelRouter(list(groups.values()), catch_all, dict(config.aliases))
    return built


def _copy(deployment: Deployment, model: str | None, weight: float = 1.0) -> Deployment:
    """The same upstream key (and so the same health) serving under another name."""
    return Deployment(
        deployment.name, deployment.provider, deployment.health, model, weight, deployment.billing
    )
