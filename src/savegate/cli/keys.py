"""`savegate keys create|list|update|revoke`: manage API keys in the store."""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from savegate.config import Config
from savegate.core.keys import ApiKey
from savegate.keys.spec import KeySettings, NewKey
from savegate.keys.store import KeyStore
from savegate.store.db import create_engine, create_schema

T = TypeVar("T")
console = Console()


def _expiry(value: str) -> datetime:
    """An ISO date-time, or a duration from now such as `30d`, `12h`, `15m`."""
    match = re.fullmatch(r"(\d+)([dhm])", value)
    if match:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[match[2]]
        return datetime.now(UTC) + timedelta(**{unit: int(match[1])})
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _settings_arguments(parser: argparse.ArgumentParser, *, creating: bool) -> None:
    parser.add_argument("--name", required=creating)
    parser.add_argument("--owner", help="owner or team label")
    parser.add_argument("--models", help="allowed models, comma-separated (wildcards allowed)")
    parser.add_argument("--quota", type=int, help="monthly token quota")
    parser.add_argument("--budget", type=float, help="monthly budget in USD")
    parser.add_argument("--budget-mode", choices=["hard", "soft"])
    parser.add_argument("--expires", type=_expiry, help="ISO date-time or a duration: 30d, 12h")
    parser.add_argument("--rpm", type=int, help="requests a minute")
    parser.add_argument("--tpm", type=int, help="tokens a minute")
    parser.add_argument("--concurrency", type=int, help="requests in flight at once")
    parser.add_argument(
        "--cache", choices=["on", "off"], help="the response cache for this key's requests"
    )


def register(commands: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    parser = commands.add_parser("keys", help="manage API keys")
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key and print its secret once")
    common(create)
    _settings_arguments(create, creating=True)
    create.add_argument("--admin", action="store_true", help="an admin key")
    create.set_defaults(run=_create)
    listing = actions.add_parser("list", help="list keys (never their secrets)")
    common(listing)
    listing.set_defaults(run=_list)
    change = actions.add_parser("update", help="change a key's limits or labels")
    common(change)
    change.add_argument("id")
    _settings_arguments(change, creating=False)
    change.set_defaults(run=_update)
    revoke = actions.add_parser("revoke", help="revoke a key at once and for good")
    common(revoke)
    revoke.add_argument("id")
    revoke.set_defaults(run=_revoke)


def with_store(config: Config, action: Callable[[KeyStore], Awaitable[T]]) -> T:
    async def go() -> T:
        engine = create_engine(config.resolved_database_url())
        try:
            await create_schema(engine)
            return await action(KeyStore(engine))
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    given = {
        "name": args.name,
        "owner": args.owner,
        "allowed_models": [m.strip() for m in args.models.split(",")] if args.models else None,
        "monthly_token_quota": args.quota,
        "monthly_budget_usd": args.budget,
        "budget_mode": args.budget_mode,
        "expires_at": args.expires,
        "rpm": args.rpm,
        "tpm": args.tpm,
        "max_concurrent": args.concurrency,
        "cache": {"on": True, "off": False}.get(args.cache or ""),
    }
    return {name: value for name, value in given.items() if value is not None}


def _create(args: argparse.Namespace, config: Config) -> int:
    try:
        spec = NewKey(**_settings(args), is_admin=args.admin)
    except ValidationError as exc:
        console.print(f"[red]savegate: invalid key settings:[/red] {exc}")
        return 2
    key, secret = with_store(config, lambda store: store.create(spec))
    print(f"Created {'admin ' if key.is_admin else ''}key {key.id} ({key.name}).")
    print("Secret (shown only this once):")
    print(secret)
    return 0


def _row(key: ApiKey, now: datetime) -> list[str]:
    status = "revoked" if key.revoked else "expired" if key.expired(now) else "active"
    return [
        key.id,
        key.name,
        key.owner or "",
        f"sk-savegate-…{key.hint}",
        "admin" if key.is_admin else "user",
        ", ".join(key.allowed_models) if key.allowed_models is not None else "all",
        f"{key.monthly_token_quota:,}" if key.monthly_token_quota is not None else "",
        f"${key.monthly_budget_usd:,.2f} {key.budget_mode}"
        if key.monthly_budget_usd is not None
        else "",
        key.created_at.strftime("%Y-%m-%d %H:%M"),
        status,
    ]


def _list(args: argparse.Namespace, config: Config) -> int:
    keys = with_store(config, lambda store: store.list())
    table = Table(
        "ID", "NAME", "OWNER", "KEY", "ROLE", "MODELS", "QUOTA", "BUDGET", "CREATED", "STATUS"
    )
    now = datetime.now(UTC)
    for key in keys:
        table.add_row(*_row(key, now))
    Console(width=200).print(table)
    return 0


def _update(args: argparse.Namespace, config: Config) -> int:
    try:
        changes = KeySettings(**_settings(args))
    except ValidationError as exc:
        console.print(f"[red]savegate: invalid key settings:[/red] {exc}")
        return 2
    key = with_store(config, lambda store: store.update(args.id, changes))
    if key is None:
        print(f"savegate: no key with id {args.id}")
        return 1
    print(f"Updated {key.id}.")
    return 0


def _revoke(args: argparse.Namespace, config: Config) -> int:
    if with_store(config, lambda store: store.revoke(args.id)):
        print(f"Revoked {args.id}.")
        return 0
    print(f"savegate: no active key with id {args.id}")
    return 1
