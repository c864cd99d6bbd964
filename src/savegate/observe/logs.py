"""Log output: text lines (the default) or one JSON object per line, written by a thread
of their own so that a request never waits on stderr.

Every record goes through a queue: the caller only enqueues it (its message is already
formatted and redacted by the record factory `core.redact.redact_logs` installs); the
writer thread formats and writes. A `Deferred` entry (the access log's) is cheaper
still: the writer thread makes its record. Fields given as `extra` show as JSON keys, or
as `key=value` pairs after the text message, their text values redacted as well.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import os
import queue
import sys
import time
from typing import Any, Literal, Protocol

import orjson

from savegate.core.redact import Redactor

LogFormat = Literal["text", "json"]

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


class Deferred(Protocol):
    """A log entry whose record the writer thread makes: the caller pays for a put."""

    def record(self) -> logging.LogRecord: ...


class JsonFormatter(logging.Formatter):
    def __init__(self, worker: int, redactor: Redactor) -> None:
        super().__init__()
        self._worker = worker
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        data: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "worker": self._worker,
            "pid": record.process,
        }
        extras = extra_fields(record, self._redactor)
        if extras:  # not made by the record factory (the access log's): not redacted yet
            data["message"] = self._redactor.text(data["message"])
            data.update(extras)
        if record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = record.stack_info
        return orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class TextFormatter(logging.Formatter):
    def __init__(self, tag: str, redactor: Redactor) -> None:
        super().__init__(f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s")
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        extras = extra_fields(record, self._redactor)
        if not extras:
            return super().format(record)  # its message was redacted when it was made
        record.msg, record.args = self._redactor.text(record.getMessage()), None
        pairs = " ".join(f"{key}={_text_value(value)}" for key, value in extras.items())
        return f"{super().format(record)} {pairs}"


def _text_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str) and value and " " not in value and '"' not in value:
        return value
    return orjson.dumps(value, default=str).decode()


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


class _Listener(logging.handlers.QueueListener):
    def prepare(self, record: Any) -> logging.LogRecord:
        made: logging.LogRecord = (
            record if isinstance(record, logging.LogRecord) else record.record()
        )
        return made


class _Output:
    """The running listener, and how to fall back to writing directly."""

    listener: logging.handlers.QueueListener | None = None
    direct: logging.Handler | None = None
    queue: queue.SimpleQueue[Any] | None = None


_output = _Output()


def configure(level: str, log_format: LogFormat, worker: int, tag: str, redactor: Redactor) -> None:
    """Log at `level` in `log_format` through a writer thread of this process's own
    (threads do not survive a fork: each worker calls this again). `worker` is 0 for the
    supervisor or a lone process; `tag` prefixes the text format's logger name."""
    stop()
    direct = logging.StreamHandler(sys.stderr)
    direct.setFormatter(
        JsonFormatter(worker, redactor) if log_format == "json" else TextFormatter(tag, redactor)
    )
    records: queue.SimpleQueue[Any] = queue.SimpleQueue()
    _output.listener = _Listener(records, direct)
    _output.direct, _output.queue = direct, records
    logging.basicConfig(level=level.upper(), handlers=[_Enqueue(records)], force=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration step
    logging.captureWarnings(True)  # warnings in the same format, not raw on stderr
    _output.listener.start()


def defer(entry: Deferred) -> None:
    """Have the writer thread make and write `entry`'s record; without one (not
    configured, or stopped), it is logged here and now."""
    records = _output.queue if _output.listener is not None else None
    if records is not None:
        records.put(entry)
        return
    record = entry.record()
    logging.getLogger(record.name).handle(record)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())


def stop() -> None:
    """Write what is queued, then write directly: records made after this (the last words
    of a worker about to exit) are not lost in a queue nobody reads."""
    listener, direct = _output.listener, _output.direct
    _output.listener = None
    if listener is None or direct is None:
        return
    listener.stop()
    _write_directly(direct)


def _write_directly(direct: logging.Handler) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(direct)


def _forget_listener() -> None:
    """In a forked child the parent's writer thread does not exist: until the child
    configures its own, it writes directly."""
    if _output.listener is not None and _output.direct is not None:
        _output.listener = None
        _write_directly(_output.direct)


atexit.register(stop)
os.register_at_fork(after_in_child=_forget_listener)
