"""`savegate` command line: `serve`, `keys`, `usage`, `chat` and `config check`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from savegate import __version__
from savegate.cli import chat, config_check, keys, serve, usage
from savegate.config import Config, ConfigError, load_config


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (default: ./savegate.yaml if present)")
    parser.add_argument("--data-dir", help="where the SQLite store lives (default: .savegate)")


def config_from(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    if args.data_dir:
        config = config.model_copy(update={"data_dir": args.data_dir})
    return config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="savegate", description=__doc__)
    parser.add_argument("--version", action="version", version=f"savegate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve.register(commands, _common)
    keys.register(commands, _common)
    usage.register(commands, _common)
    chat.register(commands, _common)
    config_check.register(commands, _common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not getattr(args, "loads_config", True):
        return int(args.run(args) or 0)
    try:
        config = config_from(args)
    except ConfigError as exc:
        print(f"savegate: {exc}", file=sys.stderr)
        return 2
    return int(args.run(args, config) or 0)
