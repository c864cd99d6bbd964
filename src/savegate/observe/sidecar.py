"""The gateway's end of its sidecar: a process of each gateway process's own, to which the
event loop hands what it would otherwise format and send between requests, in batches
through a pipe: the facts of its access lines, which the sidecar makes and writes, and
finished spans, which it encodes in OTLP and sends to the collector when tracing is on.

Making an access line costs about 13 µs of a cache hit's 100 (bench/CACHE.md), encoding
a span in protobuf twelve times what marshalling it does (1.9 against 0.15 µs,
bench/OBSERVE.md); in the sidecar that work runs on another core. The sidecar ends when
its pipe closes, however the gateway ends, once it has written and sent what it holds.
If it dies another starts; meanwhile access lines are made here again (none is lost)
and spans are counted dropped, as are those it had not reported.
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

from savegate.observe import logs
from savegate.observe.otlp import SpanOf

log = logging.getLogger(__name__)

FRAME = struct.Struct("<I")  # a frame's size, before its marshalled body
HANDOVER = 256  # spans in a frame at most; fewer go after HANDOVER_SECONDS
HANDOVER_SECONDS = 0.2
MAX_UNWRITTEN = 4 << 20  # bytes waiting for the pipe beyond which frames are not sent
RESTART_PAUSE = 1.0
EXIT_TIMEOUT = 25.0  # an export on its way (10 s), then the rest (10 s)

# A span as handed over: its kind is the number `Sidecar.kind` gave it.
Handed = SpanOf[int]
# A kind of span, defined once per process: (its number, then `Encoder.kind`'s arguments).
KindDefinition = tuple[int, str, int, dict[str, Any], tuple[str, ...], str | None]


class Sidecar:
    def __init__(self, tracing: dict[str, Any] | None, logging_args: Sequence[str]) -> None:
        """`tracing`: the exporter's settings (endpoint, headers, service name), or None;
        sent through the pipe, not on its command line: headers may carry a collector's
        credentials, as the log settings carry the upstream keys to mask."""
        self._tracing = tracing
        self._argv = [sys.executable, "-m", "savegate.observe.sidecar_process", *logging_args]
        self._queue: list[Handed] = []
        self._kinds: list[KindDefinition] = []
        self._sent_kinds = 0  # how many of them the running process knows
        self._sent_secrets: list[str] | None = None  # the masked keys it knows
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stdin: asyncio.StreamWriter | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self._closing = False
        # Span counts: of processes gone (`_past`), and of the one running: handed to it,
        # and what it reported of them.
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

    def add_lines(self, lines: list[logs.Facts]) -> bool:
        """Hands over access lines' facts, and the spans waiting; False if the sidecar
        cannot take them now (the lines are then the caller's to make)."""
        return self._hand_over(lines)

    def _hand_over(self, lines: list[logs.Facts] | None = None) -> bool:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        spans, self._queue = self._queue, []
        if not spans and not lines:
            return True
        stdin = self._stdin
        # No process to take them, or one stuck or starved of CPU.
        if (
            stdin is None
            or stdin.is_closing()
            or (stdin.transport.get_write_buffer_size() > MAX_UNWRITTEN)
        ):
            self._lost += len(spans)
            return False
        kinds = self._kinds[self._sent_kinds :]
        secrets = logs.masked_secrets()
        new_secrets = secrets if secrets is not self._sent_secrets else None
        try:
            body = marshal.dumps((kinds, spans, lines, new_secrets))
        except ValueError as exc:  # an attribute of a type marshal does not know
            log.warning("tracing: %d spans dropped: %s", len(spans), exc)
            self._lost += len(spans)
            return False
        self._sent_kinds = len(self._kinds)
        self._sent_secrets = secrets
        stdin.write(FRAME.pack(len(body)) + body)
        self._handed += len(spans)
        return True

    async def start(self) -> None:
        """Starts the sidecar, and another whenever it dies; access lines go to it once
        it is up."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="savegate-sidecar")
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
                log.error("cannot start the sidecar process (%s)", exc)
                self._up.set()
                await asyncio.sleep(RESTART_PAUSE)
                continue
            assert process.stdin is not None and process.stdout is not None
            log.info("sidecar process pid %d", process.pid)
            settings = marshal.dumps({"tracing": self._tracing, "lines": logs.line_settings()})
            process.stdin.write(FRAME.pack(len(settings)) + settings)
            self._process, self._stdin = process, process.stdin
            self._sent_kinds, self._sent_secrets = 0, logs.masked_secrets()
            logs.send_lines_to(self.add_lines)
            self._up.set()
            await self._read_reports(process.stdout)
            code = await process.wait()
            logs.send_lines_to(None)
            self._stdin = None
            self._retire()
            if self._closing:
                return
            log.warning("the sidecar process ended (exit code %s); starting another", code)
            await asyncio.sleep(RESTART_PAUSE)

    async def _read_reports(self, stdout: asyncio.StreamReader) -> None:
        """Its span counts, `exported dropped` a line, until it ends."""
        while line := await stdout.readline():
            with contextlib.suppress(ValueError):
                exported, dropped = map(int, line.split())
                self._reported = [exported, dropped]

    def _retire(self) -> None:
        """A process ended: the spans it took and did not report are lost with it."""
        exported = self._reported[0]
        self._past[0] += exported
        self._past[1] += self._handed - exported
        self._handed, self._reported = 0, [0, 0]

    async def close(self) -> None:
        """Hands over what is left and lets the process write and send it, and end;
        access lines are made here again from then on."""
        self._closing = True
        logs.hand_over()
        logs.send_lines_to(None)
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
            log.warning("the sidecar process did not end in %.0f s", EXIT_TIMEOUT)
            if self._process is not None:
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
