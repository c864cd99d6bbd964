"""What a gateway process loads at start: the heavy modules only its options need stay
out (each costs a worker megabytes of memory; bench/memory.py measures it)."""

from __future__ import annotations

import subprocess
import sys

_START = """
import sys
import savegate.api.asgi, savegate.app, savegate.cli.serve
print(sorted(m for m in ("numpy", "alembic", "opentelemetry", "httpx") if m in sys.modules))
"""


def test_a_gateway_without_a_semantic_cache_never_loads_numpy():
    loaded = subprocess.run(
        [sys.executable, "-c", _START], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
