"""Usage rows are written in batches, off the request path.

`add()` only appends to a bounded in-memory buffer. A background task writes what has
gathered every `interval` seconds (or sooner when a batch is full), the rows and their
keys' last use in one transaction, run in one hop to a thread on SQLite (`Serial`: through
the async driver each statement and the commit were hand-offs between threads, some
4 million instructions of the event loop's a flush, more than its rows). When the database
is unavailable it keeps the rows and retries with backoff. A row the database refuses
while it is up is set aside in `usage_rejected` (logged and counted), never retried in
front of the rows behind it. `close()` (graceful shutdown, SIGTERM) writes everything
left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, insert
from sqlalchemy.exc import DBAPIError

from savegate.core.faults import store_failed
from savegate.metering.record import COLUMNS, UsageRecord
from savegate.metering.rows import Statement, UsageInsert
from savegate.store.engine import AsyncEngine
from savegate.store.serial import Serial
from savegate.store.tables import usage_rejected

log = logging.getLogger(__name__)

# Records on a connection when each key was last used.
TouchKeys = Callable[[Connection, dict[str, datetime]], None]


class UsageSink:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        touch_keys: TouchKeys,
        interval: float = 0.5,
        batch_size: int = 1000,
        capacity: int = 1_000_000,
    ) -> None:
        self._engine = engine
        self._insert = UsageInsert(engine.dialect)
        self._serial = Serial(engine)
        self._touch_keys = touch_keys
        self._interval = interval
        self._batch_size = batch_size
        self._buffer: deque[UsageRecord] = deque()
        self._capacity = capacity
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()
        self._writing: list[UsageRecord] = []  # the batch being written right now
        self.dropped = 0
        self.written = 0
        self.flushes = 0  # batches written
        self.rejected = 0  # refused by the database, kept in usage_rejected

    def add(self, record: UsageRecord) -> None:
        record.fit()
        if len(self._buffer) >= self._capacity:
            # Past the bound the oldest row goes: memory must not grow without limit
            # through a long database outage.
            self._buffer.popleft()
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.error("usage buffer full: %d usage rows dropped so far", self.dropped)
        self._buffer.append(record)
        if len(self._buffer) >= self._batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def pending_totals(self, key_id: str, since: datetime) -> tuple[int, float]:
        """Tokens and cost of a key's rows not yet written (cache hits count for nothing)."""
        rows = [
            r
            for r in (*self._writing, *self._buffer)
            if r.key_id == key_id and r.created_at >= since and not r.cache_hit
        ]
        return sum(r.tokens.total for r in rows), sum(r.cost_usd for r in rows)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="savegate-usage-writer")

    async def _run(self) -> None:
        backoff = self._interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            self._wake.clear()
            try:
                await self.flush()
                backoff = self._interval
            except Exception:
                store_failed("database", "usage")
                backoff = min(30.0, backoff * 2)
                log.warning(
                    "could not write usage (%d rows waiting); retrying in %.1f s",
                    len(self._buffer),
                    backoff,
                    exc_info=True,
                )

    async def flush(self) -> None:
        """Write everything buffered now; rows go back to the buffer if the database is
        unavailable.

        Rows that arrive while it writes wait for the next flush: under steady traffic
        a flush that chased them would never end, writing a few rows per transaction."""
        async with self._flushing:
            remaining = len(self._buffer)
            while remaining > 0 and self._buffer:
                count = min(self._batch_size, remaining, len(self._buffer))
                remaining -= count
                self._writing = [self._buffer.popleft() for _ in range(count)]
                try:
                    await self._write_batch()
                except BaseException:
                    self._buffer.extendleft(reversed(self._writing))  # what is left of it
                    raise
                finally:
                    self._writing = []
                self.flushes += 1

    async def _write_batch(self) -> None:
        """Write `_writing`, taking each row off it once it is stored or set aside."""
        batch = self._writing
        statements, last_used = self._insert.statements(batch), _last_used(batch)
        try:
            await self._serial.run(
                lambda connection: self._write(connection, statements, last_used)
            )
        except Exception as exc:
            if _outage(exc):
                raise
            # The database answered but refused the batch: find the rows it refuses.
            stored: list[UsageRecord] = []
            while self._writing:
                record = self._writing[0]
                try:
                    await self._insert_rows([record])
                except Exception as row_exc:
                    if _outage(row_exc):
                        raise
                    await self._set_aside(record, row_exc)  # raises if the database is down
                else:
                    stored.append(record)
                    self.written += 1
                self._writing.pop(0)
            await self._touch(stored)
            return
        self._writing = []
        self.written += len(batch)

    def _write(
        self, connection: Connection, statements: list[Statement], last_used: dict[str, datetime]
    ) -> None:
        UsageInsert.run(connection, statements)
        self._touch_keys(connection, last_used)

    async def _insert_rows(self, records: Sequence[UsageRecord]) -> None:
        statements = self._insert.statements(records)
        await self._serial.run(lambda connection: UsageInsert.run(connection, statements))

    async def _set_aside(self, record: UsageRecord, exc: Exception) -> None:
        """Keep a refused row in `usage_rejected`. Writing it there is also the test that
        the database is up: if that fails too, the row was not the problem."""
        reason = str(exc.orig if isinstance(exc, DBAPIError) else exc)[:2000]
        # ASCII-escaped JSON, so that no character the row held can be refused again.
        row = json.dumps(dict(zip(COLUMNS, record.values(), strict=True)), default=str)
        async with self._engine.begin() as connection:
            await connection.execute(
                insert(usage_rejected),
                {"rejected_at": datetime.now(UTC), "record": row, "reason": reason},
            )
        self.rejected += 1
        log.error(
            "usage row of request %s refused by the database (%s); kept in usage_rejected, "
            "%d so far",
            record.request_id,
            reason,
            self.rejected,
        )

    async def _touch(self, records: list[UsageRecord]) -> None:
        last_used = _last_used(records)
        with contextlib.suppress(Exception):
            await self._serial.run(lambda connection: self._touch_keys(connection, last_used))

    async def close(self, grace_seconds: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + grace_seconds
        if self._task is not None:
            # Stopped between flushes, not in one: a write cancelled on its way may still
            # commit (in its thread, or on the server), and its rows, put back in the
            # buffer, would be written twice. Only a write stuck past the grace is cut.
            between = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_seconds):
                    between = await self._flushing.acquire()
            try:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            finally:
                if between:
                    self._flushing.release()
        while self._buffer:
            try:
                await self.flush()
            except Exception:
                if asyncio.get_running_loop().time() > deadline:
                    log.error("shutting down with %d usage rows unwritten", len(self._buffer))
                    break
                await asyncio.sleep(0.5)
        await self._serial.aclose()


def _last_used(records: Sequence[UsageRecord]) -> dict[str, datetime]:
    return {record.key_id: record.created_at for record in records}


def _outage(exc: Exception) -> bool:
    """The database could not be reached: every row is kept for the next try."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated
    return isinstance(exc, OSError | TimeoutError)
