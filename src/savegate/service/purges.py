"""What ages out of the database: stored Responses API answers past
`responses.retention_days`.

Every process purges on its own, a little at a time: a purge is idempotent, the index on
`created_at` finds the oldest rows at once, and no replica needs to be the one that
does it. Reads never wait for a purge: an aged response is gone from the moment it ages
out (`ResponseStore.load`), the purge only frees its row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.exc import SQLAlchemyError

from savegate.limits.rate.throttle import Throttle
from savegate.store.responses import ResponseStore

log = logging.getLogger(__name__)

MAX_INTERVAL_SECONDS = 3600.0
MIN_INTERVAL_SECONDS = 1.0


class Purges:
    def __init__(self, responses: ResponseStore) -> None:
        self._responses = responses
        seconds = responses.retention.total_seconds() / 10  # a response outlives it by 10 %
        self._interval = min(MAX_INTERVAL_SECONDS, max(MIN_INTERVAL_SECONDS, seconds))
        self._task: asyncio.Task[None] | None = None
        self._warning = Throttle(60.0)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="savegate-purges")

    async def _run(self) -> None:
        while True:
            try:
                purged = await self._responses.purge()
            except (SQLAlchemyError, OSError) as exc:
                if self._warning.ready():
                    log.warning("could not purge aged stored responses (%s)", exc)
            else:
                if purged:
                    log.info("purged %d stored responses past their retention", purged)
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
