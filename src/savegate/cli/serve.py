"""`savegate serve`: start the gateway."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from pydantic import ValidationError

from savegate import __version__
from savegate.api.asgi import ApiApp
from savegate.api.server import DrainingServer, PairedWritesProtocol
from savegate.app import Gateway
from savegate.cli.workers import Supervisor, listen
from savegate.config import Config, ServerConfig
from savegate.core.redact import Redactor, redact_logs
from savegate.keys.spec import NewKey
from savegate.keys.store import KeyStore
from savegate.observe.shared import SnapshotDir
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
        lines.append(f"Provider {name} ({provider.base_url}): {models}")
    if config.providers and config.local.enabled:
        lines.append(f"Embedded model: {config.local.name}")
    if created:
        lines.append(
            "First start: API keys created. They are shown only this once; store them now."
        )
        lines.extend(f"  {name + ' key:':<13} {secret}" for name, secret in created)
    return "\n".join(lines)


def run(args: argparse.Namespace, config: Config) -> int:
    updates: dict[str, object] = {
        k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None
    }
    if args.workers is not None:
        updates["workers"] = args.workers
    if updates:
        try:
            server = ServerConfig.model_validate({**config.server.model_dump(), **updates})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise SystemExit(f"savegate: server.{where}: {first['msg']}") from None
        config = config.model_copy(update={"server": server})
    workers = config.server.processes
    _log_as(config, "supervisor" if workers > 1 else None)
    redact_logs(Redactor(config.upstream_secrets()))  # before anything talks to an upstream
    created = asyncio.run(_first_start_keys(config))
    print(_banner(config, created, workers), flush=True)
    # The metrics' own port, if any, is served by the workers beside the main one.
    extra = [] if config.metrics.port is None else [listen(config.server.host, config.metrics.port)]
    if workers == 1:
        main = [listen(config.server.host, config.server.port)] if extra else []
        _serve(config, main + extra, 0)
        return 0
    sock = listen(config.server.host, config.server.port)
    shared = SnapshotDir.create() if config.metrics.enabled else None
    if shared is not None:
        logging.getLogger("savegate.supervisor").info("workers share metrics in %s", shared.path)
    try:
        return Supervisor(
            sock,
            workers,
            lambda s, n: _serve(config, [s, *extra], n, shared),
            config.server.shutdown_grace_seconds,
            exited=shared.mark_dead if shared is not None else None,
        ).run()
    finally:
        if shared is not None:
            shared.remove()


def _log_as(config: Config, who: str | None) -> None:
    """Log lines name the process they come from when there are several."""
    tag = f"[{who}] " if who else ""
    logging.basicConfig(
        level=config.server.log_level.upper(),
        format=f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration step


def _serve(
    config: Config,
    sockets: list[socket.socket],
    worker: int,
    shared: SnapshotDir | None = None,
) -> None:
    """One gateway process: alone (no `sockets`: it binds its own), or worker `worker` of
    several on the supervisor's sockets, sharing its metrics in `shared`."""
    if worker:
        _log_as(config, f"worker {worker}")
    gateway = Gateway(config, str(shared.path) if shared is not None else None)
    app = ApiApp(gateway)
    grace = config.server.shutdown_grace_seconds
    settings = uvicorn.Config(
        app,
        host=config.server.host,
        port=config.server.port,
        http=PairedWritesProtocol,
        loop="uvloop",
        lifespan="on",
        access_log=False,
        proxy_headers=False,  # nothing here reads the client's address
        log_config=None,  # uvicorn's lines go through our format, worker named
        log_level=config.server.log_level,
        # A backstop: the app cuts what outlives the grace itself, a little earlier.
        timeout_graceful_shutdown=int(grace) + 2,
    )
    DrainingServer(settings, app, grace).run(sockets=sockets or None)
