"""`savegate serve`: start the gateway."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from typing import Any

import uvicorn

from savegate import __version__
from savegate.api.asgi import ApiApp
from savegate.api.server import DrainingServer, PairedWritesProtocol
from savegate.app import Gateway
from savegate.config import Config
from savegate.core.redact import redact_logs
from savegate.keys.spec import NewKey
from savegate.keys.store import KeyStore
from savegate.store.db import create_engine, create_schema, setup_lock


def register(commands: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    parser = commands.add_parser("serve", help="start the gateway")
    common(parser)
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8000)")
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


def _banner(config: Config, created: list[tuple[str, str]]) -> str:
    server = config.server
    lines = [
        f"SaveGate {__version__}: OpenAI-compatible API at http://{server.host}:{server.port}/v1"
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
    updates = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if updates:
        config = config.model_copy(update={"server": config.server.model_copy(update=updates)})
    level = config.server.log_level
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration step
    gateway = Gateway(config)
    redact_logs(gateway.redactor)  # before anything has talked to an upstream
    created = asyncio.run(_first_start_keys(config))
    print(_banner(config, created), flush=True)
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
        log_level=level,
        # A backstop: the app cuts what outlives the grace itself, a little earlier.
        timeout_graceful_shutdown=int(grace) + 2,
    )
    DrainingServer(settings, app, grace).run()
    return 0
