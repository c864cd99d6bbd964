"""Providers and the router, built from the config: the one place that knows provider
types by name. Each upstream key gets an adapter of its own (sharing its provider's
connection pool), and each adapter and model a deployment in a model group."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from savegate.config import Config, ProviderConfig, RoutingConfig
from savegate.core.redact import Redactor
from savegate.core.route import Billing
from savegate.providers.anthropic import AnthropicProvider
from savegate.providers.base import ChatProvider
from savegate.providers.gemini import GeminiProvider
from savegate.providers.http import Headers, HttpUpstream
from savegate.providers.openai_compat import OpenAICompatProvider, OpenAIResponsesProvider
from savegate.routing.health import DeploymentHealth
from savegate.routing.router import Deployment, ModelGroup, ModelRouter, Quote

Adapter = Callable[[str, HttpUpstream, str | None, Callable[[Headers], None]], ChatProvider]

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
    # What a reload keeps: each provider's transport (its warm connections) while its
    # config is the same, and the embedded model's adapter, whose process outlives it.
    built_from: dict[str, tuple[ProviderConfig, HttpUpstream]] = field(default_factory=dict)
    local: ChatProvider | None = None


class _DeploymentFactory:
    """Deployments of one provider: one per upstream key and model, each with its own
    health (upstream limits and failures are per key and per model), all sharing the
    provider's connection pool."""

    def __init__(
        self, name: str, config: ProviderConfig, http: HttpUpstream, routing: RoutingConfig
    ) -> None:
        self.name = name
        self._config = config
        self._http = http
        self._routing = routing
        self._keys: list[str | None] = list(config.api_keys()) or [None]
        self._billing = Billing(
            config.discount, dict(config.prices), batch_discount=config.batch_discount
        )
        self._adapter: Adapter = PROVIDER_TYPES[config.type]
        if config.responses == "native":
            self._adapter = OpenAIResponsesProvider
        self.adapters: list[ChatProvider] = []

    def build(
        self, model: str | None, weight: float = 1.0, prompt_cache: str | None = None
    ) -> list[Deployment]:
        """`prompt_cache`: the model group's setting, over the provider's own."""
        deployments = []
        make = self._adapter
        if (
            self._config.type == "anthropic"
            and (prompt_cache or self._config.prompt_cache) == "auto"
        ):
            make = partial(AnthropicProvider, prompt_cache=True)
        for index, key in enumerate(self._keys):
            health = DeploymentHealth(
                self._routing.failure_threshold, self._routing.cooldown_seconds
            )
            adapter = make(self.name, self._http, key, health.observe)
            self.adapters.append(adapter)
            label = self.name if len(self._keys) == 1 else f"{self.name}#{index + 1}"
            deployments.append(Deployment(label, adapter, health, model, weight, self._billing))
        return deployments


def build_providers(
    config: Config,
    redactor: Redactor,
    quote: Quote | None = None,
    previous: Providers | None = None,
) -> Providers:
    """With no provider configured the embedded model answers every model name; once real
    providers exist it answers only to its own name. `redactor` masks the upstream keys in
    what the providers return; `quote` prices requests for `strategy: cheapest`. On a
    reload, `previous` is what runs: what it shares with the new config is kept."""
    built = Providers(ModelRouter([]))
    factories: dict[str, _DeploymentFactory] = {}
    for name, provider_config in config.providers.items():
        kept = previous.built_from.get(name) if previous is not None else None
        if kept is not None and kept[0] == provider_config:
            http = kept[1]
        else:
            http = HttpUpstream(name, provider_config, redactor)
        built.built_from[name] = (provider_config, http)
        built.transports.append(http)
        factories[name] = _DeploymentFactory(name, provider_config, http, config.routing)
    groups: dict[str, ModelGroup] = {}
    for name, provider_config in config.providers.items():
        for route in provider_config.models:
            group = groups.setdefault(
                route.name, ModelGroup(route.name, [], config.routing.strategy, owned_by=name)
            )
            group.deployments += factories[name].build(route.upstream)
    for public, group_config in config.models.items():
        deployments = [
            built_deployment
            for deployment in group_config.deployments
            for built_deployment in factories[deployment.provider].build(
                deployment.model, deployment.weight, group_config.prompt_cache
            )
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
        from savegate.providers.local import LocalProvider

        local = previous.local if previous is not None else None
        if local is None:
            # The model process starts with the gateway only if it answers every model name.
            local = LocalProvider(
                config.local,
                data_dir=Path(config.data_dir),
                eager=not groups,
                log_level=config.server.log_level,
                log_format=config.server.log_format,
            )
        built.local = local
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
    built.router = ModelRouter(list(groups.values()), catch_all, dict(config.aliases), quote)
    for factory in factories.values():
        built.adapters.extend(factory.adapters)
    return built
