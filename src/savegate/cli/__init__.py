"""`savegate` command line: `serve`, `keys`, `usage`, `chat` and `config check`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from savegate import __version__
from savegate.config import Config, ConfigError, load_config

# Each command by the module that defines it.
COMMANDS = {
    "serve": "serve",
    "keys": "keys",
    "usage": "usage",
    "chat": "chat",
    "config": "config_check",
}


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (default: ./savegate.yaml if present)")
    parser.add_argument("--data-dir", help="where the SQLite store lives (default: .savegate)")


def config_from(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    if args.data_dir:
        config = config.model_copy(update={"data_dir": args.data_dir})
    return config


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser, or only `only`'s: each command's module is imported only
    when it may run, so a gateway process never holds what `keys` or `chat` need."""
    parser = argparse.ArgumentParser(prog="savegate", description=__doc__)
    parser.add_argument("--version", action="version", version=f"savegate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS if only is None else (only,):
        importlib.import_module(f"savegate.cli.{COMMANDS[name]}").register(commands, _common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    if not getattr(args, "loads_config", True):
        return int(args.run(args) or 0)
    try:
        config = config_from(args)
    except ConfigError as exc:
        print(f"savegate: {exc}", file=sys.stderr)
        return 2
    return int(args.run(args, config) or 0)
