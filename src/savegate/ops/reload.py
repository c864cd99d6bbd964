"""Live reload: the config file read again (SIGHUP, `POST /admin/reload`), its providers,
models, aliases, routing and prices applied to new requests without a restart.

What a reload builds is swapped in at once (one synchronous step on the event loop): a
request plans its route either before or after, never half-way. Requests in flight keep
the deployments they planned with; the transports only the old config used are closed
once every request that was in flight at the swap has ended. A file that does not
validate changes nothing. Settings that only a restart applies (the listening address,
the stores, …) keep their running values and are reported.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from savegate.composition import Providers, build_providers
from savegate.config import Config, ServerConfig
from savegate.core.redact import Redactor
from savegate.observe import logs

if TYPE_CHECKING:
    from savegate.app import Gateway

log = logging.getLogger(__name__)

# What a reload applies; any other setting that changed needs a restart.
LIVE = frozenset({"providers", "models", "aliases", "routing", "prices"})
LIVE_SERVER = frozenset({"max_body_bytes", "max_inflight", "log_level"})


@dataclass
class Plan:
    """The config to run after a reload, and what changed in it."""

    config: Config
    applied: list[str] = field(default_factory=list)
    restart_required: list[str] = field(default_factory=list)


def plan(running: Config, loaded: Config) -> Plan:
    """`loaded`'s live settings with `running`'s others."""
    found = Plan(running)
    keep: dict[str, Any] = {}
    for name in Config.model_fields:
        if name == "server" or getattr(running, name) == getattr(loaded, name):
            continue
        if name in LIVE:
            found.applied.append(name)
        else:
            found.restart_required.append(name)
            keep[name] = getattr(running, name)
    keep_server: dict[str, Any] = {}
    for name in ServerConfig.model_fields:
        if getattr(running.server, name) == getattr(loaded.server, name):
            continue
        if name in LIVE_SERVER:
            found.applied.append(f"server.{name}")
        else:
            found.restart_required.append(f"server.{name}")
            keep_server[name] = getattr(running.server, name)
    server = loaded.server.model_copy(update=keep_server)
    found.config = loaded.model_copy(update={**keep, "server": server})
    return found


Inflight = Callable[[], Collection[asyncio.Task[Any]]]


class Reloader:
    """`load` reads the file as `savegate serve` did (with its command-line overrides);
    `redactors` learn the new upstream keys (the log records' one among them);
    `siblings`, with several workers, has the others reload too."""

    def __init__(
        self,
        gateway: Gateway,
        load: Callable[[], Config],
        redactors: Sequence[Redactor] = (),
        siblings: Callable[[], None] | None = None,
    ) -> None:
        self._gateway = gateway
        self._load = load
        self._redactors = [gateway.redactor, *redactors]
        self._siblings = siblings
        self._inflight: Inflight = lambda: ()
        self._retiring: set[asyncio.Task[None]] = set()

    def watch(self, inflight: Inflight) -> None:
        """Where the requests in flight are: old transports wait for them."""
        self._inflight = inflight

    def reload(self, *, everywhere: bool = False) -> Plan:
        """Read and apply the file; a ConfigError (nothing changed) if it is invalid.
        `everywhere`: the other workers reload too."""
        gateway = self._gateway
        found = plan(gateway.config, self._load())
        if found.restart_required:
            log.warning(
                "config reload: %s changed; only a restart applies that (the running values stay)",
                ", ".join(found.restart_required),
            )
        if found.applied:
            self._apply(found.config)
            log.info("config reloaded: %s applied", ", ".join(found.applied))
        else:
            log.info("config reloaded: nothing to apply")
        if everywhere and self._siblings is not None:
            self._siblings()
        return found

    def _apply(self, config: Config) -> None:
        gateway = self._gateway
        for redactor in self._redactors:
            redactor.extend(config.upstream_secrets())
        old = gateway.providers
        new = build_providers(config, gateway.redactor, gateway.meter.quote, previous=old)
        gateway.apply(config, new)
        logs.set_level(config.server.log_level)
        task = asyncio.get_running_loop().create_task(self._retire(old, new, self._inflight()))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(
        self, old: Providers, new: Providers, inflight: Collection[asyncio.Task[Any]]
    ) -> None:
        """Close what only `old` used, once the requests that may hold it have ended."""
        try:
            if inflight:
                await asyncio.wait(inflight)
        finally:  # at shutdown too, cancelled: they are closed now
            await _close(old, new)

    async def aclose(self) -> None:
        """At shutdown: what still waits to be retired is closed now."""
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)


async def _close(old: Providers, new: Providers) -> None:
    kept_adapters = {id(adapter) for adapter in new.adapters}
    kept_transports = {id(http) for http in new.transports}
    adapters = [a for a in old.adapters if id(a) not in kept_adapters]
    transports = [t for t in old.transports if id(t) not in kept_transports]
    await asyncio.gather(*(adapter.aclose() for adapter in adapters), return_exceptions=True)
    await asyncio.gather(*(http.aclose() for http in transports), return_exceptions=True)
    if transports:
        log.info("config reload: %d old provider transport(s) closed", len(transports))
