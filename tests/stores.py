"""The storage back-ends tests run on: SQLite (the embedded default) and the machine's
real PostgreSQL, in a database of the test's own that is dropped afterwards."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import create_async_engine

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _pg(statement: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    """A SQLAlchemy URL for a fresh, empty database on `backend`."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'data' / 'savegate.db'}"
        return
    name = "savegate_test_" + secrets.token_hex(6)
    asyncio.run(_pg(f"CREATE DATABASE {name}"))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(_pg(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def query(url: str, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
    """Run SQL against the gateway's database from the test."""
    from sqlalchemy import text

    async def go() -> list[Any]:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                result = await connection.execute(text(sql), params or {})
                return list(result.all()) if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(go())
