"""What a gateway process loads at start: the heavy modules only its options need stay
out (each costs a worker megabytes of memory; bench/memory.py measures it)."""

from __future__ import annotations

import subprocess
import sys

_START = """
import sys
import savegate.api.asgi, savegate.app, savegate.cli.serve
heavy = ("numpy", "alembic", "opentelemetry", "httpx", "prometheus_client", "sqlalchemy.orm")
print(sorted(m for m in heavy if m in sys.modules))
"""


def test_a_gateway_without_a_semantic_cache_never_loads_numpy():
    loaded = subprocess.run(
        [sys.executable, "-c", _START], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"


_WHOLE = """
import sys
import savegate.store.engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
print("sqlalchemy.orm" in sys.modules, AsyncSession.__name__, async_sessionmaker.__name__)
"""


def test_the_asyncio_package_without_its_orm_still_gives_all_of_it_when_asked():
    found = subprocess.run(
        [sys.executable, "-c", _WHOLE], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == "True AsyncSession async_sessionmaker"
