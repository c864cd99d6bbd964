"""`savegate serve`: start the gateway."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from pydantic import ValidationError

from savegate import __version__
from savegate.api.asgi import ApiApp
from savegate.api.protocol import HttpProtocol
from savegate.api.server import DrainingServer
from savegate.app import Gateway
from savegate.cli.workers import BACKLOG, Supervisor, listen
from savegate.config import Config, ConfigError, ServerConfig
from savegate.config_problems import validation_problems
from savegate.core.redact import Redactor, redact_logs
from savegate.keys.spec import NewKey
from savegate.keys.store import KeyStore
from savegate.observe import logs
from savegate.observe.shared import SnapshotDir
from savegate.ops.reload import Reloader, plan
from savegate.store.db import create_engine, create_schema, setup_lock


def register(commands: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    parser = commands.add_parser("serve", help="start the gateway")
    common(parser)
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8000)")
    parser.add_argument(
        "--workers",
        type=lambda value: value if value == "auto" else int(value),
        help="worker processes sharing the port: a number or `auto` (one per core); default 1",
    )
    parser.add_argument(
        "--log-format", choices=["text", "json"], help="log lines as text (default) or JSON"
    )
    parser.set_defaults(run=run)


async def _first_start_keys(config: Config) -> list[tuple[str, str]]:
    """On an empty store, create an admin key and a first user key; return their secrets."""
    engine = create_engine(config.resolved_database_url())
    try:
        await create_schema(engine)
        async with setup_lock(engine):  # replicas starting together create them once
            store = KeyStore(engine)
            if await store.count():
                return []
            _, admin = await store.create(NewKey(name="admin", is_admin=True))
            _, user = await store.create(NewKey(name="default"))
            return [("admin", admin), ("default", user)]
    finally:
        await engine.dispose()


def _banner(config: Config, created: list[tuple[str, str]], workers: int) -> str:
    server = config.server
    processes = f" ({workers} workers)" if workers > 1 else ""
    lines = [
        f"SaveGate {__version__}: OpenAI-compatible API at "
        f"http://{server.host}:{server.port}/v1{processes}"
    ]
    if not config.providers:
        if config.local.enabled:
            lines.append(
                f"No providers configured: every model name is answered by the embedded model "
                f"{config.local.name}."
            )
        else:
            lines.append("No providers configured and the embedded model is disabled.")
    for name, provider in config.providers.items():
        models = ", ".join(route.name for route in provider.models)
        proxy = provider.proxy_server()
        via = f" through the proxy {proxy.label}" if proxy is not None else ""
        lines.append(f"Provider {name} ({provider.base_url}{via}): {models}")
    if config.providers and config.local.enabled:
        lines.append(f"Embedded model: {config.local.name}")
    if created:
        lines.append(
            "First start: API keys created. They are shown only this once; store them now."
        )
        lines.extend(f"  {name + ' key:':<13} {secret}" for name, secret in created)
    return "\n".join(lines)


def _overridden(args: argparse.Namespace, config: Config) -> Config:
    """`config` with the command line's server settings, which win over the file's."""
    names = ("host", "port", "workers", "log_format")
    updates = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if not updates:
        return config
    try:
        server = ServerConfig.model_validate({**config.server.model_dump(), **updates})
    except ValidationError as exc:
        raise SystemExit(f"savegate: server.{validation_problems(exc)[0]}") from None
    return config.model_copy(update={"server": server})


def _loader(args: argparse.Namespace) -> Callable[[], Config]:
    """How a reload reads the config: as this command did, file and command line."""
    from savegate.cli import config_from  # the package imports this module

    return lambda: _overridden(args, config_from(args))


def run(args: argparse.Namespace, config: Config) -> int:
    config = _overridden(args, config)
    workers = config.server.processes
    redactor = Redactor(config.upstream_secrets())
    redact_logs(redactor)  # before anything talks to an upstream
    _log_as(config, redactor, 0, "supervisor" if workers > 1 else None)
    created = asyncio.run(_first_start_keys(config))
    _announce(config, created, workers, redactor)
    load = _loader(args)
    # The metrics' own port, if any, is served by the workers beside the main one.
    extra = [] if config.metrics.port is None else [listen(config.server.host, config.metrics.port)]
    if workers == 1:
        main = [listen(config.server.host, config.server.port)] if extra else []
        _serve(config, main + extra, 0, load, redactor)
        return 0
    running = [config]  # what a worker started from now on runs: reloads change it

    def reload() -> None:
        try:
            running[0] = plan(running[0], load()).config
        except ConfigError as exc:
            logging.getLogger("savegate.supervisor").error("config reload refused: %s", exc)

    shared = SnapshotDir.create() if config.metrics.enabled else None
    if shared is not None:
        logging.getLogger("savegate.supervisor").info("workers share metrics in %s", shared.path)
    try:
        return Supervisor(
            config.server.host,
            config.server.port,
            workers,
            lambda s, n: _serve(running[0], [s, *extra], n, load, redactor, shared),
            config.server.shutdown_grace_seconds,
            reload=reload,
            exited=shared.mark_dead if shared is not None else None,
        ).run()
    finally:
        if shared is not None:
            shared.remove()


def _announce(
    config: Config, created: list[tuple[str, str]], workers: int, redactor: Redactor
) -> None:
    """The banner on stdout: as it is, or as one JSON line in the JSON log format (the
    first-start keys in a field of their own, shown this once)."""
    if config.server.log_format == "text":
        print(_banner(config, created, workers), flush=True)
        return
    banner = _banner(config, [], workers)
    record = logging.LogRecord("savegate", logging.INFO, __file__, 0, banner, None, None)
    if created:
        record.first_start_keys = dict(created)
    print(logs.JsonFormatter(0, redactor).format(record), flush=True)


def _log_as(config: Config, redactor: Redactor, worker: int, who: str | None) -> None:
    """Log lines name the process they come from when there are several."""
    server = config.server
    tag = f"[{who}] " if who else ""
    logs.configure(server.log_level, server.log_format, worker, tag, redactor)


def _serve(
    config: Config,
    sockets: list[socket.socket],
    worker: int,
    load: Callable[[], Config],
    redactor: Redactor,
    shared: SnapshotDir | None = None,
) -> None:
    """One gateway process: alone (no `sockets`: it binds its own), or worker `worker` of
    several on the supervisor's sockets, sharing its metrics in `shared`. `load` reads
    the config again on a reload."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the event loop handles it
    if worker:
        _log_as(config, redactor, worker, f"worker {worker}")
    try:
        gateway = Gateway(config, str(shared.path) if shared is not None else None)
        siblings = None if not worker else _supervisor_signal(os.getppid())
        gateway.reloader = Reloader(gateway, load, [redactor], siblings)
        app = ApiApp(gateway)
        grace = config.server.shutdown_grace_seconds
        settings = uvicorn.Config(
            app,
            host=config.server.host,
            port=config.server.port,
            backlog=BACKLOG,
            http=HttpProtocol,
            loop="uvloop",
            ws="none",  # no WebSocket endpoint: its modules are never loaded
            lifespan="on",
            access_log=False,
            proxy_headers=False,  # nothing here reads the client's address
            log_config=None,  # uvicorn's lines go through our format, worker named
            log_level=config.server.log_level,
            # A backstop: the app cuts what outlives the grace itself, a little earlier.
            timeout_graceful_shutdown=int(grace) + 2,
        )
        DrainingServer(settings, app, grace).run(sockets=sockets or None)
    finally:
        logs.stop()  # a worker leaves by os._exit: what it logged must be written first


def _supervisor_signal(supervisor: int) -> Callable[[], None]:
    """SIGHUP to the supervisor, which has every worker reload; never to whichever process
    adopted this one, should the supervisor be gone (init would reload itself)."""

    def tell() -> None:
        if os.getppid() == supervisor:
            os.kill(supervisor, signal.SIGHUP)

    return tell
