"""`savegate keys create|list|revoke`: manage API keys in the store."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from savegate.config import Config
from savegate.keys.store import KeyStore
from savegate.store.db import create_engine, create_schema

T = TypeVar("T")


def register(commands: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    parser = commands.add_parser("keys", help="manage API keys")
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key and print its secret once")
    common(create)
    create.add_argument("--name", required=True)
    create.add_argument("--admin", action="store_true", help="an admin key")
    create.set_defaults(run=_create)
    listing = actions.add_parser("list", help="list keys (never their secrets)")
    common(listing)
    listing.set_defaults(run=_list)
    revoke = actions.add_parser("revoke", help="revoke a key at once and for good")
    common(revoke)
    revoke.add_argument("id")
    revoke.set_defaults(run=_revoke)


def _with_store(config: Config, action: Callable[[KeyStore], Awaitable[T]]) -> T:
    async def go() -> T:
        engine = create_engine(config.resolved_database_url())
        try:
            await create_schema(engine)
            return await action(KeyStore(engine))
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _create(args: argparse.Namespace, config: Config) -> int:
    key, secret = _with_store(config, lambda store: store.create(args.name, is_admin=args.admin))
    print(f"Created {'admin ' if key.is_admin else ''}key {key.id} ({key.name}).")
    print("Secret (shown only this once):")
    print(secret)
    return 0


def _list(args: argparse.Namespace, config: Config) -> int:
    keys = _with_store(config, lambda store: store.list())
    rows = [("ID", "NAME", "KEY", "ROLE", "CREATED", "STATUS")]
    for key in keys:
        rows.append(
            (
                key.id,
                key.name,
                f"sk-savegate-…{key.hint}",
                "admin" if key.is_admin else "user",
                key.created_at.strftime("%Y-%m-%d %H:%M"),
                "revoked" if key.revoked else "active",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def _revoke(args: argparse.Namespace, config: Config) -> int:
    if _with_store(config, lambda store: store.revoke(args.id)):
        print(f"Revoked {args.id}.")
        return 0
    print(f"savegate: no active key with id {args.id}")
    return 1
