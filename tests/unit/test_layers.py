"""The package's layers, checked by walking every module's imports.

HTTP surface → service (use cases) → routing → providers, with metering and limits
beside routing, and core and wire beneath everything. A lower layer never imports a
higher one, so each seam stays where the architecture says it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "savegate"
MAX_LINES = 500

# package → the savegate packages it must not import
FORBIDDEN: dict[str, set[str]] = {
    "core": {"api", "service", "routing", "providers", "metering", "limits", "keys", "wire"},
    "wire": {"api", "service", "routing", "providers", "metering", "limits", "keys"},
    "httpclient": {"api", "service", "routing", "providers", "metering", "limits", "keys"},
    "providers": {"api", "service", "routing", "metering", "limits", "keys"},
    "routing": {"api", "service", "metering", "limits", "keys"},
    "metering": {"api", "service", "routing", "providers", "limits"},
    "limits": {"api", "service", "routing", "providers", "metering"},
    "keys": {"api", "service", "routing", "providers", "metering", "limits"},
    "cache": {"api", "service", "routing", "providers", "metering", "limits", "keys"},
    "store": {"api", "service", "routing", "providers", "metering", "limits"},
    "service": {"api"},
}
# Metrics and traces watch the layers through their seams: no layer knows them, only the
# composition (app.py, cli/) and the HTTP surface.
for _layer in FORBIDDEN.values():
    _layer.add("observe")
FORBIDDEN["observe"] = {"api", "service", "providers", "keys"}
# The embedded model's process entry point composes that process as cli/ composes the
# gateway's: it sets up its logging.
ENTRY_POINTS = {"providers/local/server.py": {"observe"}}


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _imported_packages(path: Path) -> set[str]:
    """The top-level savegate packages `path` imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "savegate" and len(parts) > 1:
                found.add(parts[1])
    return found


def _package(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_module_respects_its_layer(path: Path) -> None:
    forbidden = FORBIDDEN.get(_package(path), set())
    forbidden = forbidden - ENTRY_POINTS.get(str(path.relative_to(SRC)), set())
    wrong = _imported_packages(path) & forbidden
    assert not wrong, f"{path.relative_to(SRC)} imports {sorted(wrong)}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_module_is_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(SRC)} has {lines} lines"


def test_the_walk_sees_the_package() -> None:
    assert len(_modules()) > 50
    assert "core" in _imported_packages(SRC / "routing" / "executor.py")
