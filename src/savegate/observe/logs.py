"""Log output: text lines (the default) or one JSON object per line, written by a thread
of their own so that a request never waits on stderr.

Every record goes through a queue: the caller only enqueues it (its message is already
formatted and redacted by the record factory `core.redact.redact_logs` installs); the
writer thread formats and writes. A `Deferred` entry (the access log's) is cheaper
still: the request's tail only appends it (no `LogRecord`), and the event loop hands the
facts of those gathered `GATHER_SECONDS` after the first to the gateway's sidecar
(`observe.sidecar`), which makes their lines and writes them, in another process. Without
one (not started yet, or restarting), the event loop makes the lines and hands the writer
thread their text in one piece. Waking the writer thread costs a system call (tens of
microseconds on a VM), which a request's tail should not pay; and the lines are not made
by the writer thread, because a thread that wants the interpreter while the loop holds
it costs more in hand-overs than the lines cost to make (measured: 12 % of peak
throughput for cache hits). Fields given as `extra` show as JSON keys, or as `key=value`
pairs after the text message, their text values redacted as well.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import logging
import logging.handlers
import os
import queue
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from savegate.core.redact import Redactor, redact_logs

LogFormat = Literal["text", "json"]
GATHER_SECONDS = 0.05

# What every LogRecord has: anything else on a record came as an extra field (but
# uvicorn's copy of its message with terminal colours).
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def extra_fields(record: logging.LogRecord, redactor: Redactor) -> dict[str, Any]:
    """The record's extras, text values redacted (they did not pass the record factory)."""
    return {
        k: redactor.text(v) if isinstance(v, str) else v
        for k, v in record.__dict__.items()
        if k not in _STANDARD
    }


@dataclass(slots=True)
class Line:
    """An INFO line made without a `LogRecord`: `fields` are
    its JSON keys or `key=value` pairs; those named in `untrusted` (and the message) may
    hold a client's or an upstream's text, and are redacted as they are written. (One is
    made for every access line: frozen, it took three times as long.)"""

    logger: str
    created: float
    message: str
    fields: dict[str, Any]
    untrusted: tuple[str, ...]

    def record(self) -> logging.LogRecord:
        """The line as a record, for a logger without the writer thread."""
        record = logging.LogRecord(self.logger, logging.INFO, __file__, 0, self.message, None, None)
        record.created, record.msecs = self.created, (self.created % 1) * 1000
        record.__dict__.update(self.fields)
        return record


# What a deferred entry's line is made of, marshallable (a tuple of plain values).
Facts = tuple[Any, ...]


class Deferred(Protocol):
    """A log entry whose line is made later, in a batch: the caller pays for an append.
    (The access log's: the sidecar makes its lines from the facts with
    `access_log.line_of`.)"""

    def facts(self) -> Facts: ...

    def line(self) -> Line: ...


class _Stamps:
    """`strftime` once a second, not once a line. The event loop (access lines) and the
    writer thread (records) both use it: the second and its stamp are one tuple, read
    and replaced whole, so neither sees one second's stamp under another's."""

    def __init__(self, layout: str, clock: Callable[[float], time.struct_time]) -> None:
        self._layout, self._clock = layout, clock
        self._last = (-1, "")

    def __call__(self, created: float) -> str:
        second = int(created)
        last = self._last
        if second != last[0]:
            last = self._last = (second, time.strftime(self._layout, self._clock(second)))
        return last[1]


class JsonFormatter(logging.Formatter):
    """`origin`: the gateway process's number; or the name of a process that is no
    worker's (`model`: the embedded model's, which serves every worker; `sidecar`), which
    its lines say as `"process": name`."""

    def __init__(self, origin: int | str, redactor: Redactor, pid: int | None = None) -> None:
        """`pid`: the process whose lines these are (a sidecar writes its gateway's)."""
        super().__init__()
        self._origin = {"worker": origin} if isinstance(origin, int) else {"process": origin}
        self._redactor = redactor
        self._stamps = _Stamps("%Y-%m-%dT%H:%M:%S", time.gmtime)
        self._pid = os.getpid() if pid is None else pid

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": f"{self._stamps(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **self._origin,
            "pid": record.process,
        }
        extras = extra_fields(record, self._redactor)
        if extras:  # not made by the record factory: not redacted yet
            data["message"] = self._redactor.text(data["message"])
            data.update(extras)
        if record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = record.stack_info
        return orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS).decode()

    def format_line(self, line: Line) -> str:
        created = line.created
        data: dict[str, Any] = {
            "time": f"{self._stamps(created)}.{int(created % 1 * 1000):03d}Z",
            "level": "info",
            "logger": line.logger,
            "message": self._redactor.text(line.message),
            **self._origin,
            "pid": self._pid,
            **_redacted(line, self._redactor),
        }
        return orjson.dumps(data, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self, tag: str, redactor: Redactor) -> None:
        super().__init__(f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s")
        self._tag = tag
        self._redactor = redactor
        self._stamps = _Stamps("%Y-%m-%d %H:%M:%S", time.localtime)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return f"{self._stamps(record.created)},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        extras = extra_fields(record, self._redactor)
        if not extras:
            return super().format(record)  # its message was redacted when it was made
        record.msg, record.args = self._redactor.text(record.getMessage()), None
        return f"{super().format(record)} {_pairs(extras)}"

    def format_line(self, line: Line) -> str:
        created = line.created
        stamp = f"{self._stamps(created)},{int(created % 1 * 1000):03d}"
        message = self._redactor.text(line.message)
        pairs = _pairs(_redacted(line, self._redactor))
        return f"{stamp} INFO {self._tag}{line.logger}: {message} {pairs}"


def _redacted(line: Line, redactor: Redactor) -> dict[str, Any]:
    """The line's fields, its untrusted ones redacted in place (a line is written once)."""
    fields = line.fields
    for name in line.untrusted:
        value = fields.get(name)
        if isinstance(value, str):
            fields[name] = redactor.text(value)
    return fields


def _pairs(fields: dict[str, Any]) -> str:
    """`key=value`: a plain word or an integer as it is, nothing as `-`, anything else
    in JSON. The common kinds are told apart inline: an access line has 18 fields, and a
    call for each was a third of the line's cost."""
    parts = []
    for key, value in fields.items():
        kind = value.__class__
        if value is None:
            parts.append(f"{key}=-")
        elif (kind is str and value and " " not in value and '"' not in value) or kind is int:
            parts.append(f"{key}={value}")
        elif kind is bool:
            parts.append(f"{key}=true" if value else f"{key}=false")
        elif kind is float and (value == 0 or 1e-4 <= abs(value) < 1e16):
            parts.append(f"{key}={value!r}")  # as JSON has it in this range
        else:
            parts.append(f"{key}={orjson.dumps(value, default=str).decode()}")
    return " ".join(parts)


class _Enqueue(logging.handlers.QueueHandler):
    """Enqueues the record as it is: made for this handler alone (the root's only one),
    it need not be copied, and its message is formatted already."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None  # the traceback's frames need not outlive the call
        return record


class _Stream(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr; a batch of deferred lines is written with one call, not one a line."""

    def __init__(self, formatter: JsonFormatter | TextFormatter) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(formatter)
        self._lines = formatter

    def text(self, entries: list[Deferred]) -> str:
        """The entries' lines (on the caller's thread)."""
        return "".join([f"{self._lines.format_line(entry.line())}\n" for entry in entries])

    def write_text(self, text: str) -> None:
        with self.lock:  # type: ignore[union-attr]
            self.stream.write(text)
            self.stream.flush()


class _Listener(logging.handlers.QueueListener):
    def __init__(self, records: queue.SimpleQueue[Any], direct: _Stream) -> None:
        super().__init__(records, direct)
        self._direct = direct

    def handle(self, record: Any) -> None:
        if isinstance(record, str):  # deferred lines, made already
            try:
                self._direct.write_text(record)
            except Exception:  # what cannot be written must not stop the writer
                self._direct.handleError(logging.makeLogRecord({"msg": record}))
            return
        super().handle(record)


class _Output:
    """The running listener, how to fall back to writing directly, the deferred entries
    not yet handed over, and who makes their lines instead of this process (`remote`:
    False when it cannot take them); what a sidecar needs to write lines alike."""

    def __init__(self) -> None:
        self.listener: logging.handlers.QueueListener | None = None
        self.direct: _Stream | None = None
        self.queue: queue.SimpleQueue[Any] | None = None
        self.batch: list[Deferred] = []
        self.remote: Callable[[list[Facts]], bool] | None = None
        self.settings: dict[str, Any] = {"format": "text", "worker": 0, "tag": ""}
        self.redactor = Redactor(())


_output = _Output()


def configure(
    level: str, log_format: LogFormat, origin: int | str, tag: str, redactor: Redactor
) -> None:
    """Log at `level` in `log_format` through a writer thread of this process's own
    (threads do not survive a fork: each worker calls this again). `origin` is the
    worker's number, 0 for the supervisor or a lone process, or the name of a process of
    another kind (`JsonFormatter`); `tag` prefixes the text format's logger name."""
    stop()
    _output.settings = {"format": log_format, "worker": origin, "tag": tag}
    _output.redactor = redactor
    direct = _Stream(
        JsonFormatter(origin, redactor) if log_format == "json" else TextFormatter(tag, redactor)
    )
    records: queue.SimpleQueue[Any] = queue.SimpleQueue()
    _output.listener = _Listener(records, direct)
    _output.direct, _output.queue = direct, records
    logging.basicConfig(level=level.upper(), handlers=[_Enqueue(records)], force=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration step
    logging.captureWarnings(True)  # warnings in the same format, not raw on stderr
    _output.listener.start()


def helper_arguments(level: str, log_format: str) -> list[str]:
    """The command line options by which a helper process (a sidecar; the embedded
    model's, whose starter may not know this module, spells them out) logs as the
    gateway that starts it does."""
    return ["--log-level", level, "--log-format", log_format]


def add_helper_options(parser: argparse.ArgumentParser) -> None:
    """`helper_arguments`' options, for a helper process's parser."""
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")


def configure_helper(args: argparse.Namespace, name: str) -> Redactor:
    """A helper process's logging, by `add_helper_options`' options: the gateway's
    format, its lines naming the process `name`, and masked of credentials as the
    gateway's are (the redactor returned masks what it is told of, too)."""
    redactor = Redactor(())
    redact_logs(redactor)
    configure(args.log_level, args.log_format, name, f"[{name}] ", redactor)
    return redactor


def defer(entry: Deferred) -> None:
    """Have `entry`'s line written by the writer thread (made soon, with those that
    follow it on this event loop); without one (not configured, or stopped), it is
    logged here and now."""
    if _output.listener is None:
        record = entry.line().record()
        logging.getLogger(record.name).handle(record)
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not on the event loop: no batch to join
        _put([entry])
        return
    batch = _output.batch
    batch.append(entry)
    if len(batch) == 1:
        loop.call_later(GATHER_SECONDS, hand_over)


def hand_over() -> None:
    """The deferred entries, to the sidecar or made here, now."""
    batch, _output.batch = _output.batch, []
    _put(batch)


def send_lines_to(remote: Callable[[list[Facts]], bool] | None) -> None:
    """Have `remote` make the deferred entries' lines from their facts (None: here)."""
    _output.remote = remote


def line_settings() -> dict[str, Any]:
    """What a sidecar needs to write this process's lines as it would."""
    return {**_output.settings, "pid": os.getpid(), "secrets": masked_secrets()}


def masked_secrets() -> list[str]:
    """The secrets lines are masked of; another list once more are added."""
    return _output.redactor.secrets


def _put(entries: list[Deferred]) -> None:
    """The entries' facts to the sidecar, or their lines, made here, to the writer
    thread in one piece."""
    if not entries:
        return
    remote = _output.remote
    if remote is not None and remote([entry.facts() for entry in entries]):
        return
    records, direct = _output.queue, _output.direct
    if records is None or direct is None:
        return
    try:
        text = direct.text(entries)
    except Exception:  # a line that cannot be made must not stop the others' callers
        direct.handleError(entries[0].line().record())
        return
    records.put(text)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())


def stop() -> None:
    """Write what is queued, then write directly: records made after this (the last words
    of a worker about to exit) are not lost in a queue nobody reads."""
    listener, direct = _output.listener, _output.direct
    if listener is None or direct is None:
        return
    hand_over()
    _output.listener = None
    listener.stop()
    _write_directly(direct)


def _write_directly(direct: logging.Handler) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(direct)


def _forget_listener() -> None:
    """In a forked child the parent's writer thread and sidecar are not its own: until
    the child configures its own, it writes directly."""
    _output.remote = None
    if _output.listener is not None and _output.direct is not None:
        _output.listener, _output.batch = None, []
        _write_directly(_output.direct)


atexit.register(stop)
os.register_at_fork(after_in_child=_forget_listener)
