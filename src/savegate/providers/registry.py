"""The one place that knows provider types by name and builds the routing table."""

from __future__ import annotations

from collections.abc import Callable

from savegate.config import Config, ProviderConfig
from savegate.providers.anthropic import AnthropicProvider
from savegate.providers.base import ChatProvider
from savegate.providers.gemini import GeminiProvider
from savegate.providers.openai_compat import OpenAICompatProvider
from savegate.routing.router import Billing, ModelEntry, ModelRouter

PROVIDER_TYPES: dict[str, Callable[[str, ProviderConfig], ChatProvider]] = {
    "openai": OpenAICompatProvider,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
}


def build_router(config: Config) -> tuple[ModelRouter, list[ChatProvider]]:
    """Providers from the config, and the router over them.

    With no provider configured the embedded model answers every model name; once real
    providers exist it answers only to its own name.
    """
    providers: list[ChatProvider] = []
    entries: list[ModelEntry] = []
    for name, provider_config in config.providers.items():
        provider = PROVIDER_TYPES[provider_config.type](name, provider_config)
        providers.append(provider)
        billing = Billing(provider_config.discount, dict(provider_config.prices))
        entries.extend(
            ModelEntry(route.name, provider, route.upstream, owned_by=name, billing=billing)
            for route in provider_config.models
        )
    catch_all: ModelEntry | None = None
    if config.local.enabled:
        # Imported here so a gateway without the embedded model never loads llama.cpp.
        from savegate.providers.local import LocalProvider

        local = LocalProvider(config.local)
        providers.append(local)
        own = ModelEntry(
            config.local.name,
            local,
            config.local.name,
            owned_by="savegate-local",
            billing=Billing(free=True),
        )
        if entries:
            entries.append(own)
        else:
            catch_all = own
    return ModelRouter(entries, catch_all), providers
