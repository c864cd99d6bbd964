"""The usage INSERT, compiled once for the engine's dialect.

SQLAlchemy's per-row parameter handling (a dict per row, each value through its type's
processor, looked up per statement) cost about three times what SQLite takes to store
the row, and it runs on the event loop. Here the statement is compiled once, each
column's bind processor is looked up once, and rows go to the driver as tuples (or
dicts, for a driver with named parameters), made by the caller (`statements`, on the
event loop) before a writer thread runs them (`run`).

On SQLite a statement carries many rows (`VALUES (...), (...)`): the driver lets go of
the interpreter lock for each statement's step and takes it back, and a writer thread
that takes it back while the event loop holds it costs a hand-over of the lock, which
cost more than the rows (one a row: 10-17 % of peak throughput).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Connection, DateTime, Float, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

from savegate.metering.record import COLUMNS, UsageRecord
from savegate.store.engine import AsyncConnection
from savegate.store.tables import usage

# Statements of a few rows: on PostgreSQL a batch runs on the event loop, awaiting each
# statement, and preparing a statement's parameters holds the loop: requests get a turn.
ROWS_PER_STATEMENT = 100
# SQLite's statements' sizes, largest first (far below its 32,766 parameters a statement):
# a batch is cut into as many of each as fit, so that few statements are ever prepared.
SQLITE_ROWS = (256, 64, 16, 4, 1)

# A statement and its parameters: one row's, or (`executemany`) a list of rows'.
Statement = tuple[str, Sequence[Any]]


def _sqlite_processor(
    column_type: TypeEngine[Any], processor: Callable[[Any], Any] | None
) -> Callable[[Any], Any] | None:
    """SQLite's own handling where SQLAlchemy's processor only repeats it: the driver
    takes a bool as the integer it is, and a FLOAT column makes a number a float itself
    (REAL affinity). Sixteen of a row's values went through a processor: the largest
    cost of a row on the event loop."""
    if isinstance(column_type, Boolean | Float):
        return None
    if isinstance(column_type, DateTime):
        return _SqliteTimes()
    return processor


class _SqliteTimes:
    """SQLAlchemy's text of a time on SQLite, `YYYY-MM-DD HH:MM:SS.ffffff` (its time zone
    dropped), with the second's part made once a second: SQLAlchemy's processor made all
    of it for every row, at more than the rest of the row cost."""

    def __init__(self) -> None:
        # The last second and its text, read and replaced as one tuple.
        self._last: tuple[tuple[int, ...], str] = ((), "")

    def __call__(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        second = (value.second, value.minute, value.hour, value.day, value.month, value.year)
        last = self._last
        if second != last[0]:
            last = self._last = (second, value.isoformat(" ", "seconds")[:19])
        return f"{last[1]}.{value.microsecond:06d}"


class UsageInsert:
    def __init__(self, dialect: Dialect) -> None:
        compiled = insert(usage).compile(dialect=dialect, column_keys=list(COLUMNS))
        self._sql = str(compiled)
        head, _, values = self._sql.partition(" VALUES ")
        self._rows_sql = (  # SQLite's many-row statements, by their rows (else none)
            [(n, f"{head} VALUES {', '.join([values] * n)}") for n in SQLITE_ROWS]
            if dialect.name == "sqlite"
            else []
        )
        self._positional = bool(dialect.positional)
        if self._positional and tuple(compiled.positiontup or ()) != COLUMNS:
            raise RuntimeError("usage INSERT parameters are not in COLUMNS order")
        self._processors: list[tuple[int, Callable[[Any], Any]]] = []
        for index, name in enumerate(COLUMNS):
            column_type = usage.c[name].type
            processor: Callable[[Any], Any] | None
            processor = column_type.dialect_impl(dialect).bind_processor(dialect)
            if dialect.name == "sqlite":
                processor = _sqlite_processor(column_type, processor)
            if processor is not None:
                self._processors.append((index, processor))

    def _parameters(self, record: UsageRecord) -> Sequence[Any] | dict[str, Any]:
        values: Sequence[Any] = record.values()
        if self._processors:
            processed = list(values)
            for index, processor in self._processors:
                processed[index] = processor(processed[index])
            values = processed
        return tuple(values) if self._positional else dict(zip(COLUMNS, values, strict=True))

    def statements(self, records: Sequence[UsageRecord]) -> list[Statement]:
        if not self._rows_sql:
            return [
                (
                    self._sql,
                    [self._parameters(r) for r in records[start : start + ROWS_PER_STATEMENT]],
                )
                for start in range(0, len(records), ROWS_PER_STATEMENT)
            ]
        statements: list[Statement] = []
        start = 0
        for size, sql in self._rows_sql:
            while len(records) - start >= size:
                parameters: list[Any] = []
                for record in records[start : start + size]:
                    parameters += self._parameters(record)
                statements.append((sql, tuple(parameters)))
                start += size
        return statements

    @staticmethod
    def run(connection: Connection, statements: Sequence[Statement]) -> None:
        for sql, parameters in statements:
            connection.exec_driver_sql(sql, parameters)

    def write(self, connection: Connection, records: Sequence[UsageRecord]) -> None:
        self.run(connection, self.statements(records))

    async def write_in(self, connection: AsyncConnection, records: Sequence[UsageRecord]) -> None:
        """`write` inside a transaction of the async engine's (a batch's own)."""
        await connection.run_sync(self.write, records)
