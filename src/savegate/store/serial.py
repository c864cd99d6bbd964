"""Transactions that exclude every other writer from their start, each run as one unit.

The ledger and the database rate limits take one such transaction per step. On SQLite it
is BEGIN IMMEDIATE (a plain BEGIN would let two processes read the same balance, then
both write) and the whole transaction runs in one hop to a thread of its own, on the
stdlib driver: through the async driver every statement, fetch and commit would be a
hand-off between threads, some thirty of them for a reservation and its settlement.
PostgreSQL locks rows instead and runs the same work on its async connection.

A `Serial` that is not `exclusive` runs small reads the same way, in one hop (the key
store's revision, polled several times a second by every process: through the async
driver each poll cost some 3 ms of the event loop's time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Connection, Engine, create_engine, event

from savegate.store.db import sqlite_pragmas
from savegate.store.engine import AsyncEngine

T = TypeVar("T")
Work = Callable[[Connection], T]


class Serial:
    def __init__(self, engine: AsyncEngine, *, exclusive: bool = True) -> None:
        self._engine = engine
        self._exclusive = exclusive
        self._sync: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        if engine.url.get_backend_name() == "sqlite":
            self._sync = _stdlib(engine, exclusive)
            # One thread: SQLite admits one writer at a time anyway.
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="savegate-serial")

    async def run(self, work: Work[T]) -> T:
        """`work` on a connection inside one transaction (exclusive, if this `Serial`
        is), committed if it returns, rolled back if it raises."""
        if self._sync is None:
            if not self._exclusive:
                async with self._engine.connect() as connection:
                    return await connection.run_sync(work)
            async with self._engine.begin() as connection:
                return await connection.run_sync(work)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._in_thread, work)

    def _in_thread(self, work: Work[T]) -> T:
        assert self._sync is not None
        with self._sync.begin() as connection:
            return work(connection)

    async def aclose(self) -> None:
        if self._thread is not None and self._sync is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._thread, self._sync.dispose)
            self._thread.shutdown(wait=False)


def _stdlib(engine: AsyncEngine, exclusive: bool) -> Engine:
    url = engine.url.set(drivername="sqlite")
    sync = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(sync, "connect")
    def _connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        sqlite_pragmas(dbapi_connection)
        dbapi_connection.isolation_level = None  # we say when transactions begin

    @event.listens_for(sync, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if exclusive else "BEGIN")

    return sync
