"""Finished spans, sent in batches to an OTLP/HTTP endpoint, in the sidecar process.

A task on that process's event loop (no thread to contend with for the interpreter)
sends a batch as soon as it is full, and what gathered short of one every `INTERVAL`
seconds, over the gateway's keep-alive HTTP client: under load, few big exports rather
than one after another of what came while the last was on its way. The queue is
bounded: when the collector is away, spans beyond `MAX_QUEUE` are dropped and counted,
never held without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from savegate.httpclient import ConnectionPool, HttpError
from savegate.limits.rate.throttle import Throttle
from savegate.observe.otlp import Encoder, Span

log = logging.getLogger(__name__)

INTERVAL = 1.0
BATCH = 512
MAX_QUEUE = 8192
_TIMEOUT = 10.0


class SpanExporter:
    def __init__(self, endpoint: str, headers: dict[str, str], encoder: Encoder) -> None:
        self._pool = ConnectionPool(
            endpoint, limit=2, connect_timeout=_TIMEOUT, read_timeout=_TIMEOUT
        )
        self._headers = {"content-type": "application/x-protobuf", **headers}
        self._encoder = encoder
        self._queue: list[Span] = []
        self._waiter: asyncio.Future[None] | None = None  # the export task's sleep
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._warning = Throttle(10.0)
        self.exported = 0
        self.dropped = 0

    def add(self, span: Span) -> None:
        queue = self._queue
        if len(queue) >= MAX_QUEUE:
            self.dropped += 1
            return
        queue.append(span)
        if len(queue) == BATCH and (waiter := self._waiter) is not None:
            _wake(waiter)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="savegate-span-exporter")

    async def _run(self) -> None:
        """Sleeps until a batch fills or the interval is up: on one future, which the
        interval's timer or `add` wakes (`asyncio.wait_for` costs as much a wake as a
        few spans do)."""
        loop = asyncio.get_running_loop()
        due = loop.time() + INTERVAL
        while not self._closing:
            if len(self._queue) < BATCH:  # else a batch filled while the last was sent
                waiter = self._waiter = loop.create_future()
                timer = loop.call_at(due, _wake, waiter)
                try:
                    await waiter
                finally:
                    self._waiter = None
                    timer.cancel()
            if loop.time() >= due:
                await self.flush()
                due = loop.time() + INTERVAL
            else:
                await self.flush(full=True)

    async def flush(self, full: bool = False) -> None:
        """Sends what was queued when it began (with `full`, only its whole batches):
        what comes while a batch is on its way waits for the next batch or interval,
        not sent on at once in small exports."""
        count = len(self._queue)
        if full:
            count -= count % BATCH
        while count > 0:
            size = min(count, BATCH)
            count -= size
            batch, self._queue = self._queue[:size], self._queue[size:]
            try:
                await self._send(self._encoder.request(batch))
            except (HttpError, OSError, TimeoutError) as exc:
                self._failed(len(batch), str(exc))
            else:
                self.exported += len(batch)

    async def _send(self, body: bytes) -> None:
        async with asyncio.timeout(_TIMEOUT):
            response = await self._pool.post("", self._headers, body)
            try:
                await response.read()
            finally:
                response.release()
        if response.status >= 300:
            raise HttpError(f"the collector answered {response.status}")

    def _failed(self, count: int, reason: str) -> None:
        self.dropped += count
        if self._warning.ready():
            log.warning("tracing: could not export %d spans (%s)", count, reason)

    async def close(self) -> None:
        """Stops the export task, then sends what is left. An export on its way is let
        finish (within its timeout), not cut: cut, its spans would have been counted
        neither exported nor dropped, whether or not the collector had them."""
        task = self._task
        if task is not None:
            self._closing = True
            if self._waiter is not None:  # asleep between exports: nothing on its way
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(_TIMEOUT):
                    await task
        await self.flush()
        await self._pool.aclose()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
