"""The usage writer against real databases: a row the database refuses is set aside, and
the rows around it are written."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import pytest
from sqlalchemy import Connection

from savegate.core.usage import TokenCounts
from savegate.metering.record import UsageRecord
from savegate.metering.sink import UsageSink
from savegate.store.db import create_engine, create_schema
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
