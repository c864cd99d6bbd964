"""Usage rows are written in batches, off the request path.

`add()` only appends to a bounded in-memory buffer. A background task writes what has
gathered every `interval` seconds (or sooner when a batch is full); when the database
is unavailable it keeps the rows and retries with backoff. `close()` (graceful
shutdown, SIGTERM) writes everything left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from savegate.metering.record import UsageRecord
from savegate.metering.rows import UsageInsert

log = logging.getLogger(__name__)

ROWS_PER_STATEMENT = 100


class UsageSink:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        touch_keys: Callable[[dict[str, datetime]], Awaitable[None]],
        interval: float = 0.5,
        batch_size: int = 1000,
        capacity: int = 1_000_000,
    ) -> None:
        self._engine = engine
        self._insert = UsageInsert(engine.dialect)
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

    def add(self, record: UsageRecord) -> None:
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
        """Tokens and cost of a key's rows not yet written."""
        rows = [
            r
            for r in (*self._writing, *self._buffer)
            if r.key_id == key_id and r.created_at >= since
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
                backoff = min(30.0, backoff * 2)
                log.warning(
                    "could not write usage (%d rows waiting); retrying in %.1f s",
                    len(self._buffer),
                    backoff,
                    exc_info=True,
                )

    async def flush(self) -> None:
        """Write everything buffered now; rows go back to the buffer if the write fails.

        Rows that arrive while it writes wait for the next flush: under steady traffic
        a flush that chased them would never end, writing a few rows per transaction."""
        async with self._flushing:
            remaining = len(self._buffer)
            while remaining > 0 and self._buffer:
                count = min(self._batch_size, remaining, len(self._buffer))
                remaining -= count
                self._writing = [self._buffer.popleft() for _ in range(count)]
                try:
                    async with self._engine.begin() as connection:
                        # Statements of a few rows: preparing a statement's parameters
                        # holds the event loop, so requests get a turn in between.
                        for start in range(0, count, ROWS_PER_STATEMENT):
                            rows = self._writing[start : start + ROWS_PER_STATEMENT]
                            await self._insert.write(connection, rows)
                except BaseException:
                    self._buffer.extendleft(reversed(self._writing))
                    raise
                finally:
                    batch, self._writing = self._writing, []
                self.written += len(batch)
                last_used = {record.key_id: record.created_at for record in batch}
                with contextlib.suppress(Exception):
                    await self._touch_keys(last_used)

    async def close(self, grace_seconds: float = 30.0) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        deadline = asyncio.get_running_loop().time() + grace_seconds
        while self._buffer:
            try:
                await self.flush()
            except Exception:
                if asyncio.get_running_loop().time() > deadline:
                    log.error("shutting down with %d usage rows unwritten", len(self._buffer))
                    return
                await asyncio.sleep(0.5)
