"""The usage writer against real databases: a row the database refuses is set aside, and
the rows around it are written."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, insert

from savegate.core.usage import TokenCounts
from savegate.metering.record import COLUMNS, UsageRecord
from savegate.metering.sink import UsageSink
from savegate.store.db import create_engine, create_schema
from savegate.store.tables import usage
from tests.stores import database, query


def _no_touch(_: Connection, __: dict[str, datetime]) -> None:
    return None


def _record(index: int, **fields: object) -> UsageRecord:
    return UsageRecord(f"req_{index}", "key_1", "chat", "gpt-4o", False, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_refused_row_is_set_aside_and_the_rest_written(backend: str, tmp_path):
    with database(backend, tmp_path) as url:

        async def go() -> UsageSink:
            engine = create_engine(url)
            try:
                await create_schema(engine)
                sink = UsageSink(engine, touch_keys=_no_touch, batch_size=50)
                for index in range(120):
                    # Too big for any integer column: an upstream's absurd usage report.
                    tokens = TokenCounts(prompt=2**70) if index == 30 else TokenCounts(prompt=1)
                    sink.add(_record(index, tokens=tokens, model="m" * 500, error_type="e" * 99))
                await sink.flush()
                return sink
            finally:
                await engine.dispose()

        sink = asyncio.run(go())
        assert (sink.written, sink.rejected, sink.pending) == (119, 1, 0)
        (count, longest_model, longest_error) = query(
            url, "SELECT count(*), max(length(model)), max(length(error_type)) FROM usage"
        )[0]
        assert (count, longest_model, longest_error) == (119, 200, 64)
        ((record, reason),) = query(url, "SELECT record, reason FROM usage_rejected")
        assert json.loads(record)["request_id"] == "req_30"
        assert json.loads(record)["prompt_tokens"] == 2**70
        assert reason


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_rows_hold_what_sqlalchemy_would_have_written(backend: str, tmp_path):
    """The writer's own bind processing (compiled once; on SQLite, None through an adapter
    of ours) stores what a plain SQLAlchemy insert of the same values stores."""
    stamps = [
        datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        datetime(2026, 7, 8, 9, 10, 11, tzinfo=UTC),
    ]
    with database(backend, tmp_path) as url:

        async def go() -> None:
            engine = create_engine(url)
            try:
                await create_schema(engine)
                sink = UsageSink(engine, touch_keys=_no_touch)
                for index, stamp in enumerate(stamps):
                    sink.add(_record(index, created_at=stamp, ttft_ms=None, batch_id=None))
                await sink.flush()
                async with engine.begin() as connection:
                    for index, stamp in enumerate(stamps, start=len(stamps)):
                        row = dict(
                            zip(COLUMNS, _record(index, created_at=stamp).values(), strict=True)
                        )
                        await connection.execute(insert(usage), row)
            finally:
                await engine.dispose()

        asyncio.run(go())
        rows = query(url, "SELECT * FROM usage ORDER BY request_id")
        assert len(rows) == 2 * len(stamps)
        for ours, theirs in zip(rows[: len(stamps)], rows[len(stamps) :], strict=True):
            mine, plain = dict(ours._mapping), dict(theirs._mapping)
            assert mine.pop("request_id") != plain.pop("request_id")
            mine.pop("id", None), plain.pop("id", None)
            assert mine == plain


def test_closing_while_a_batch_is_written_writes_it_once(tmp_path):
    """A gateway that stops while its writer is mid-batch (a rolling restart under load):
    the batch on its way commits, and closing must not write its rows again. (SQLite,
    whose batches are written in a thread that a cancellation does not stop.)"""
    entered = threading.Event()

    def slow_touch(connection: Connection, _: dict[str, datetime]) -> None:
        entered.set()
        time.sleep(0.5)  # inside the batch's transaction, before its commit

    with database("sqlite", tmp_path) as url:

        async def go() -> None:
            engine = create_engine(url)
            try:
                await create_schema(engine)
                sink = UsageSink(engine, touch_keys=slow_touch, interval=0.01)
                sink.start()
                for index in range(20):
                    sink.add(_record(index))
                assert await asyncio.to_thread(entered.wait, 10)  # the writer took them
                sink.add(_record(20))  # and one more waits for the next batch
                await sink.close()
            finally:
                await engine.dispose()

        asyncio.run(go())
        rows = query(url, "SELECT request_id, count(*) FROM usage GROUP BY 1")
        assert sorted(rows) == sorted((f"req_{index}", 1) for index in range(21))
