"""The gateway's end of its span process: finished spans, handed over in batches through
a pipe to a process of their own, which encodes them and sends them to the collector.

Encoding a span in OTLP protobuf costs about twelve times what marshalling it does (1.9
against 0.15 µs, bench/OBSERVE.md), and sending the export's bytes costs the event loop
too: in another process, that work runs on another core instead of between requests.
The process ends when its pipe closes, however the gateway ends, once it has sent what
it holds. If it dies, what it had not reported is counted dropped and another starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
import struct
import sys
from collections.abc import Sequence
from typing import Any

from savegate.observe.otlp import SpanOf

log = logging.getLogger(__name__)

FRAME = struct.Struct("<I")  # a frame's size, before its marshalled body
HANDOVER = 256  # spans in a frame at most; fewer go after HANDOVER_SECONDS
HANDOVER_SECONDS = 0.2
MAX_UNWRITTEN = 4 << 20  # bytes waiting for the pipe beyond which frames are dropped
RESTART_PAUSE = 1.0
EXIT_TIMEOUT = 25.0  # an export on its way (10 s), then the rest (10 s)

# A span as handed over: its kind is the number `SpanPipe.kind` gave it.
Handed = SpanOf[int]
# A kind of span, defined once per process: (its number, then `Encoder.kind`'s arguments).
KindDefinition = tuple[int, str, int, dict[str, Any], tuple[str, ...], str | None]


class SpanPipe:
    def __init__(self, settings: dict[str, Any], logging_args: Sequence[str]) -> None:
        """`settings`: the span process's (endpoint, headers, service name), sent through
        the pipe, not its command line: headers may carry a collector's credentials."""
        self._settings = settings
        self._argv = [sys.executable, "-m", "savegate.observe.span_process", *logging_args]
        self._queue: list[Handed] = []
        self._kinds: list[KindDefinition] = []
        self._sent_kinds = 0  # how many of them the running process knows
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stdin: asyncio.StreamWriter | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self._closing = False
        # Counts: of processes gone (`_past`), and of the one running: handed to it, and
        # what it reported of them.
        self._past = [0, 0]
        self._handed = 0
        self._reported = [0, 0]
        self._lost = 0  # dropped here: no process to take them, or its pipe full

    @property
    def exported(self) -> int:
        return self._past[0] + self._reported[0]

    @property
    def dropped(self) -> int:
        return self._past[1] + self._reported[1] + self._lost

    def kind(
        self,
        name: str,
        kind: int,
        attributes: dict[str, Any],
        keys: tuple[str, ...],
        unique: str | None = None,
    ) -> int:
        """The number of a new kind of span (`otlp.Encoder.kind`'s arguments)."""
        number = len(self._kinds)
        self._kinds.append((number, name, kind, attributes, keys, unique))
        return number

    def add(self, span: Handed) -> None:
        queue = self._queue
        queue.append(span)
        if len(queue) >= HANDOVER:
            self._hand_over()
        elif self._timer is None and self._loop is not None:
            self._timer = self._loop.call_later(HANDOVER_SECONDS, self._hand_over)

    def _hand_over(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        spans, self._queue = self._queue, []
        if not spans:
            return
        stdin = self._stdin
        if stdin is None or stdin.is_closing():
            self._lost += len(spans)
            return
        if stdin.transport.get_write_buffer_size() > MAX_UNWRITTEN:
            self._lost += len(spans)  # the process is stuck, or starved of CPU
            return
        kinds = self._kinds[self._sent_kinds :]
        try:
            body = marshal.dumps((kinds, spans))
        except ValueError as exc:  # an attribute of a type marshal does not know
            log.warning("tracing: %d spans dropped: %s", len(spans), exc)
            self._lost += len(spans)
            return
        self._sent_kinds = len(self._kinds)
        stdin.write(FRAME.pack(len(body)) + body)
        self._handed += len(spans)

    async def start(self) -> None:
        """Starts the span process, and another whenever it dies."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="savegate-span-process")
        await self._up.wait()

    async def _run(self) -> None:
        while not self._closing:
            try:
                process = await asyncio.create_subprocess_exec(
                    *self._argv,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    # Not in the gateway's process group: a Ctrl-C reaches the gateway
                    # alone, which drains and then closes the pipe. (uvloop knows no
                    # `process_group`: a session of its own.)
                    start_new_session=True,
                )
            except OSError as exc:
                log.error("tracing: cannot start the span process (%s)", exc)
                self._up.set()
                await asyncio.sleep(RESTART_PAUSE)
                continue
            assert process.stdin is not None and process.stdout is not None
            log.info("tracing: span process pid %d", process.pid)
            settings = marshal.dumps(self._settings)
            process.stdin.write(FRAME.pack(len(settings)) + settings)
            self._process, self._stdin, self._sent_kinds = process, process.stdin, 0
            self._up.set()
            await self._read_reports(process.stdout)
            code = await process.wait()
            self._stdin = None
            self._retire()
            if self._closing:
                return
            log.warning("tracing: the span process ended (exit code %s); starting another", code)
            await asyncio.sleep(RESTART_PAUSE)

    async def _read_reports(self, stdout: asyncio.StreamReader) -> None:
        """Its counts, `exported dropped` a line, until it ends."""
        while line := await stdout.readline():
            with contextlib.suppress(ValueError):
                exported, dropped = map(int, line.split())
                self._reported = [exported, dropped]

    def _retire(self) -> None:
        """A process ended: what it took and did not report is lost with it."""
        exported = self._reported[0]
        self._past[0] += exported
        self._past[1] += self._handed - exported
        self._handed, self._reported = 0, [0, 0]

    async def close(self) -> None:
        """Hands over what is left and lets the process send it and end."""
        self._closing = True
        self._hand_over()
        stdin, task = self._stdin, self._task
        if stdin is not None:
            stdin.close()  # its end of file: the process sends what it has and exits
        if task is None:
            return
        try:
            async with asyncio.timeout(EXIT_TIMEOUT):
                await task
        except TimeoutError:
            log.warning("tracing: the span process did not end in %.0f s", EXIT_TIMEOUT)
            if self._process is not None:
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
