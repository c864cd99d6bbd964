"""Engine creation and schema set-up.

Many processes may start at once on one database (workers, replicas): schema migrations
and first-start set-up run under a lock that spans them, a PostgreSQL advisory lock or,
for SQLite, a lock on a file beside the database. Alembic is imported only when a
migration must run: a start on the newest schema costs one query, not its modules' memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, event, inspect, text
from sqlalchemy.engine import make_url

from savegate.store.engine import AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig


def create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})
    # None binds as NULL through an adapter found at once: without one the driver asks
    # two types for theirs, each miss an AttributeError formatted and dropped (some
    # 3,000 instructions a None; a usage row holds several).
    sqlite3.register_adapter(type(None), _null)
    event.listen(engine.sync_engine, "connect", lambda dbapi, _record: sqlite_pragmas(dbapi))
    return engine


def _null(value: None) -> None:
    return None


def sqlite_pragmas(dbapi_connection: Any) -> None:
    # WAL lets the CLI write while a running gateway reads.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


MIGRATIONS = Path(__file__).parent / "migrations"


# `revision = "0003"` and `down_revision = "0002"` (or None) in a migration file.
_REVISION = re.compile(r'^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(?:"([^"]*)"|None)', re.M)


def migration_heads() -> set[str]:
    """The newest revisions, read from the migration files without importing Alembic. A
    file this cannot read (a merge's tuple of parents) only makes a migration run."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = {match[1]: match[2] for match in _REVISION.finditer(path.read_text())}
        if found.get("revision"):
            revisions.add(found["revision"])
        if found.get("down_revision"):
            parents.add(found["down_revision"])
    return revisions - parents


def alembic_config(connection: Connection) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


SETUP_LOCK = 0x5A7E6A7E  # the advisory lock key every SaveGate process agrees on


@contextlib.asynccontextmanager
async def setup_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """Held by one process at a time, on every process sharing the database."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        async with engine.connect() as connection:
            await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SETUP_LOCK})
            try:
                yield
            finally:
                await connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": SETUP_LOCK}
                )
                await connection.commit()
        return
    if not url.database or url.database == ":memory:":
        yield
        return
    handle = await asyncio.to_thread(open, f"{url.database}.setup-lock", "a")
    try:
        await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()  # closing the file releases its lock


async def create_schema(engine: AsyncEngine) -> None:
    """Bring the database to the newest schema (Alembic migrations, run on every start)."""
    async with setup_lock(engine), engine.begin() as connection:
        await connection.run_sync(_upgrade)


def _upgrade(connection: Connection) -> None:
    if inspect(connection).has_table("alembic_version"):
        current = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        if set(current) == migration_heads():
            return
    from alembic import command

    command.upgrade(alembic_config(connection), "head")
