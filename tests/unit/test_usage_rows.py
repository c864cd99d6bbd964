"""Usage rows as the gateway writes them to SQLite (`UsageInsert`) hold what SQLAlchemy's
own INSERT stores: the same text of each time, the same values and storage classes."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import DateTime, create_engine, insert
from sqlalchemy.dialects import sqlite

from savegate.core.usage import TokenCounts
from savegate.metering.record import COLUMNS, UsageRecord
from savegate.metering.rows import UsageInsert, _SqliteTimes
from savegate.metering.savings import Savings
from savegate.store.tables import metadata, usage


def test_a_time_has_sqlalchemys_text() -> None:
    dialect = sqlite.dialect()
    theirs = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
    ours = _SqliteTimes()
    start = datetime(2026, 12, 7, 23, 59, 59, 999_999, tzinfo=UTC)
    times = [start, start.replace(microsecond=0), datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC)]
    times.append(datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=5))))
    moment = start
    steps = [1, 999, 250_000, 10**6, 86_400 * 10**6 * 31]
    for _ in range(20_000):  # in order, as rows come, across seconds, days and months
        moment += timedelta(microseconds=random.choice(steps))
        times.append(moment)
    assert [ours(t) for t in times] == [theirs(t) for t in times]
    assert ours(None) is None


def test_a_row_is_stored_as_sqlalchemy_stores_it() -> None:
    engine = create_engine("sqlite://")
    metadata.create_all(engine, tables=[usage])
    record = UsageRecord(
        "req_ours",
        "key_1",
        "chat",
        "gpt-x",
        True,
        model="gpt-x-1",
        provider="openai",
        tokens=TokenCounts(prompt=12, completion=9, cached=3, reasoning=1),
        cost_usd=0,  # an integer where a float belongs: stored as REAL all the same
        list_cost_usd=0.00012,
        savings=Savings(discount=0.5),
        latency_ms=12.5,
        cache_hit=True,
        units=1,
    )
    twin = dataclasses.replace(record, request_id="req_theirs")
    with engine.begin() as connection:
        UsageInsert(engine.dialect).write(connection, [record])
        connection.execute(insert(usage), [dict(zip(COLUMNS, twin.values(), strict=True))])
        names = ", ".join(COLUMNS)
        kinds = ", ".join(f"typeof({name})" for name in COLUMNS)
        rows = connection.exec_driver_sql(
            f"SELECT {names}, {kinds} FROM usage ORDER BY request_id"
        ).all()
    ours, theirs = rows
    assert ours[1:] == theirs[1:] and ours[0] == "req_ours"
