"""`savegate config check [FILE]`: validate a config file without starting anything."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from savegate.config import DEFAULT_CONFIG_FILE, Config, ConfigError, load_config


def register(commands: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    parser = commands.add_parser("config", help="work with the config file")
    actions = parser.add_subparsers(dest="action", required=True)
    check = actions.add_parser(
        "check", help="validate a config file; each problem is named by its path in it"
    )
    check.add_argument("file", nargs="?", help=f"the file (default: ./{DEFAULT_CONFIG_FILE})")
    # The file is this command's input, not the config it runs with.
    check.set_defaults(run=run, loads_config=False)


def run(args: argparse.Namespace, config: Config | None = None) -> int:
    path = args.file or DEFAULT_CONFIG_FILE
    if args.file is None and not Path(path).exists():
        print(f"No {DEFAULT_CONFIG_FILE} here: the defaults apply (they are valid).")
        return 0
    try:
        checked = load_config(path)
    except ConfigError as exc:
        print(f"savegate: {exc}", file=sys.stderr)
        return 1
    print(f"{path} is valid. {summary(checked)}")
    return 0


def summary(config: Config) -> str:
    providers = ", ".join(
        f"{name} ({provider.type}, {len(provider.models)} model routes)"
        for name, provider in config.providers.items()
    )
    parts = [f"providers: {providers or 'none'}"]
    if config.models:
        parts.append(f"model groups: {', '.join(config.models)}")
    if config.aliases:
        parts.append(f"aliases: {len(config.aliases)}")
    local = "on" if config.local.enabled else "off"
    parts.append(f"embedded model: {local}; {config.server.processes} worker(s)")
    return "; ".join(parts) + "."
