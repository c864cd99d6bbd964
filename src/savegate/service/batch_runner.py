"""Batches run in the background of every gateway process, one process per batch.

Each process looks for batches nobody runs (every `poll_seconds`, and at once when one
is created or cancelled here), takes one with a lease (`store/batches.py`), and renews
the lease while it runs it, seeing on the way whether the batch was cancelled and what
its key's limits are now. A process that dies holding a batch holds it no longer than
its lease: then another one (or itself, started again) carries on where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets

from savegate.config import BatchesConfig
from savegate.service.batch_forward import NativeJob
from savegate.service.batch_job import BatchJob, JobTools
from savegate.service.batch_native import NativeBatches

log = logging.getLogger(__name__)

STOP_WAIT = 5.0  # at shutdown, for lines in flight to finish before they are cut


class BatchRunner:
    def __init__(
        self, tools: JobTools, config: BatchesConfig, native: NativeBatches | None = None
    ) -> None:
        self._tools = tools
        self._native = native
        self._config = config
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._jobs: dict[str, asyncio.Task[None]] = {}

    @staticmethod
    def new_id() -> str:
        return f"{os.getpid()}-{secrets.token_hex(6)}"

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._look(), name="savegate-batches")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        jobs = list(self._jobs.values())
        if jobs:
            await asyncio.wait(jobs, timeout=STOP_WAIT)
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)

    async def _look(self) -> None:
        store, runner = self._tools.store, self._tools.runner
        while True:
            try:
                for batch_id in await store.claimable():
                    if batch_id in self._jobs:
                        continue
                    if await store.claim(batch_id, runner, self._config.lease_seconds):
                        task = asyncio.create_task(self._run(batch_id), name=f"batch {batch_id}")
                        self._jobs[batch_id] = task
            except Exception:  # the database may be briefly unavailable: look again later
                log.warning("could not look for batches to run", exc_info=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.poll_seconds):
                    await self._wake.wait()
            self._wake.clear()

    async def _run(self, batch_id: str) -> None:
        store, runner = self._tools.store, self._tools.runner
        keeper: asyncio.Task[None] | None = None
        try:
            row = await store.load(batch_id)
            if row is None:
                return
            job = (
                NativeJob(row, self._tools, self._native)
                if row["upstream"] and self._native is not None
                else BatchJob(row, self._tools)
            )
            keeper = asyncio.create_task(self._keep(job))
            await job.run()
        except Exception:
            log.exception("batch %s stopped on an error; it will be taken up again", batch_id)
        finally:
            if keeper is not None:
                keeper.cancel()
            self._jobs.pop(batch_id, None)
            with contextlib.suppress(Exception):
                await store.release(batch_id, runner)

    async def _keep(self, job: BatchJob) -> None:
        """Renew the job's lease, and tell it its status and key, until it ends."""
        tools = self._tools
        every = min(self._config.poll_seconds, self._config.lease_seconds / 3)
        while not job.lost:
            await asyncio.sleep(every)
            try:
                status = await tools.store.renew(job.id, tools.runner, self._config.lease_seconds)
                key = await tools.keys.get(job.row["key_id"])
            except Exception:
                log.warning("could not renew the lease of batch %s", job.id, exc_info=True)
                continue
            job.observe(status, key)
