"""The semantic cache's entries, shared by every process through the database.

Each process holds all the live entries in a `VectorIndex`. Its own new entries go into
the index at once and into the table off the request path; the others' are read from the
table by one task of its own, every `refresh` seconds (sooner after a write of its own):
the rows above the last id it has seen, and for a few seconds the ids it skipped over,
which a transaction still open may yet commit. The same task deletes the expired rows and
all but the `max_entries` newest. A database that cannot be reached only delays sharing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import numpy as np

from savegate.cache.entry import Entry
from savegate.cache.vectors import Found, Vector, VectorIndex, text_key
from savegate.store.semantic import SemanticRow, SemanticTable

log = logging.getLogger(__name__)

_BATCH = 500  # rows read at once
_MAX_PENDING = 1000  # rows waiting to be written, at most (while the database is down)
_GAP_SECONDS = 10.0  # how long a skipped id is looked for again
_MAX_GAPS = 10_000
_PAUSE = 0.05  # seconds between two rounds at least: writes close together go at once
_WARN_EVERY = 10.0


class SemanticStore:
    def __init__(
        self, table: SemanticTable, *, ttl: float, max_entries: int, refresh: float
    ) -> None:
        self.index = VectorIndex(max_entries)
        self._table = table
        self._ttl = ttl
        self._max_entries = max_entries
        self._refresh = refresh
        self._pending: list[SemanticRow] = []
        self._loaded = False
        self._last = 0  # the highest id read
        self._gaps: dict[int, float] = {}  # ids skipped over → until when to look for them
        self._own: set[int] = set()  # ids of this process's rows above `_last`
        self._pruned = 0.0
        self._written = False  # since the table was last pruned
        self._warned = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="semantic-cache")

    def same_text(self, scope: str, key: bytes) -> Entry | None:
        """A live entry whose text is the one `key` (`text_key`) stands for."""
        return self.index.same_text(scope, key, time.time())

    def nearest(self, scope: str, vector: Vector) -> Found | None:
        return self.index.nearest(scope, vector, time.time())

    def add(self, scope: str, vector: Vector, text: str, entry: Entry, raw: bytes) -> None:
        """A new entry: searched here at once, written for the others soon."""
        expires = time.time() + self._ttl
        self.index.add(scope, vector, text_key(text), entry, expires)
        if len(self._pending) >= _MAX_PENDING:
            del self._pending[0]
        self._pending.append(SemanticRow(0, scope, vector.tobytes(), text, raw, expires))
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.sync()
            except Exception as exc:  # the database: tried again next round
                now = time.monotonic()
                if now - self._warned >= _WARN_EVERY:
                    self._warned = now
                    log.warning("semantic cache: the database is unavailable (%s)", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._refresh):
                    await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(_PAUSE)

    async def sync(self) -> None:
        """One round: the first load, this process's writes, the others' rows."""
        now = time.time()
        if not self._loaded:
            rows = await self._table.newest(now, self._max_entries)
            self._take(rows)
            self._last = max((row.id for row in rows), default=0)
            self._loaded = True
        await self._write(now)
        if self._written and now - self._pruned >= self._refresh:
            self._pruned, self._written = now, False
            await self._table.prune(now, self._max_entries)
        rows = await self._table.since(self._last, self._gaps, now, _BATCH)
        self._take([row for row in rows if row.id not in self._own])
        self._note(rows, now)
        self.index.prune(now)
        if len(rows) == _BATCH:
            self._wake.set()  # more to read

    async def _write(self, now: float) -> None:
        rows, self._pending = self._pending, []
        if not rows:
            return
        try:
            ids = await self._table.insert(rows)
        except BaseException:
            self._pending = (rows + self._pending)[-_MAX_PENDING:]
            raise
        self._written = True
        for id in ids:
            self._gaps.pop(id, None)
            if id > self._last:
                self._own.add(id)

    def _note(self, rows: list[SemanticRow], now: float) -> None:
        """Move `_last` past `rows`; the ids skipped over become gaps."""
        read = {row.id for row in rows}
        highest = max(read, default=self._last)
        for id in read:
            self._gaps.pop(id, None)
        for id in range(self._last + 1, max(highest, self._last + 1)):
            if id not in read and id not in self._own:
                self._gaps[id] = now + _GAP_SECONDS
        self._gaps = {id: until for id, until in self._gaps.items() if until > now}
        if len(self._gaps) > _MAX_GAPS:
            self._gaps = dict(sorted(self._gaps.items())[-_MAX_GAPS:])
        self._last = max(self._last, highest)
        self._own = {id for id in self._own if id > self._last}

    def _take(self, rows: list[SemanticRow]) -> None:
        for row in rows:
            try:
                entry = Entry.decode(row.answer)
            except (ValueError, KeyError, TypeError):
                continue  # not an entry this version can read
            vector = np.frombuffer(row.vector, np.float32)
            self.index.add(row.scope, vector, text_key(row.text), entry, row.expires_at)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._pending:  # a last chance for the entries not yet written
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._write(time.time())
