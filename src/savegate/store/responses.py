"""Stored Responses API conversations, and where those a native upstream keeps live."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, DateTime, String, delete, insert, literal, select, true
from sqlalchemy.dialects import postgresql, sqlite

from savegate.store.engine import AsyncEngine
from savegate.store.serial import Serial
from savegate.store.tables import native_responses, responses

log = logging.getLogger(__name__)

PURGE_BATCH = 1000  # rows a purge deletes in one transaction, not to hold the lock long


@dataclass(frozen=True, slots=True)
class StoredResponse:
    key_id: str
    response: dict[str, Any]
    input_items: list[dict[str, Any]]

    def conversation(self) -> list[dict[str, Any]]:
        """Everything said so far: this turn's input and its output."""
        return [*self.input_items, *self.response["output"]]


class ResponseStore:
    """The database is the truth: a response is written before its answer reaches the
    client, so a follow-up with `previous_response_id` finds it on any replica, and a
    deleted one is gone everywhere. A response older than the retention is gone as well,
    from the moment it ages out: `purge` only frees its row."""

    def __init__(self, engine: AsyncEngine, retention: timedelta) -> None:
        self._engine = engine
        self.retention = retention

    async def save(
        self, key_id: str, response: dict[str, Any], items: list[dict[str, Any]]
    ) -> None:
        try:
            async with self._engine.begin() as connection:
                await connection.execute(
                    insert(responses).values(
                        id=response["id"],
                        key_id=key_id,
                        created_at=datetime.now(UTC),
                        response=response,
                        input_items=items,
                    )
                )
        except Exception:
            # The answer still goes out: it was paid for. Only its follow-ups will fail.
            log.exception("could not store response %s", response["id"])

    async def load(self, key_id: str, response_id: str) -> StoredResponse | None:
        """A response the key created, or None (another key's responses are invisible)."""
        kept = responses.c.created_at >= datetime.now(UTC) - self.retention
        query = select(responses).where(responses.c.id == response_id, kept)
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        if row is None or row.key_id != key_id:
            return None
        return StoredResponse(row.key_id, row.response, row.input_items)

    async def delete(self, key_id: str, response_id: str) -> bool:
        owned = (responses.c.id == response_id) & (responses.c.key_id == key_id)
        async with self._engine.begin() as connection:
            result = await connection.execute(delete(responses).where(owned))
        return bool(result.rowcount)

    async def purge(self) -> int:
        """Delete the responses past the retention, a batch per transaction; how many."""
        aged = responses.c.created_at < datetime.now(UTC) - self.retention
        oldest = select(responses.c.id).where(aged).limit(PURGE_BATCH).scalar_subquery()
        purged = 0
        while True:
            async with self._engine.begin() as connection:
                result = await connection.execute(
                    delete(responses).where(responses.c.id.in_(oldest))
                )
            purged += result.rowcount
            if result.rowcount < PURGE_BATCH:
                return purged


@dataclass(frozen=True, slots=True)
class NativeResponse:
    """A response a native upstream made and keeps, as one gateway key reaches it: its
    provider, which of the provider's upstream keys made it (a digest, `account`; None: it
    had none), and whether the key was given it by a cache hit (`replayed`) rather than
    made it."""

    key_id: str
    provider: str
    account: str | None
    replayed: bool


class NativeResponseStore:
    """Where each response a native upstream keeps was made, and which keys may reach it,
    for every process: read by `GET`/`DELETE /v1/responses/{id}` and by a turn that
    continues it, on whichever worker or replica they reach."""

    def __init__(self, engine: AsyncEngine) -> None:
        # A row is written while its answer streams, and read before a turn that continues
        # one is sent: on SQLite in one hop to a thread, not the async driver's many
        # hand-offs, each a turn of the event loop taken from it.
        self._writes = Serial(engine)
        self._reads = Serial(engine, exclusive=False)

    async def remember(
        self, response_id: str, key_id: str, provider: str, account: str | None
    ) -> None:
        row = insert(native_responses).values(
            id=response_id,
            key_id=key_id,
            provider=provider,
            account=account,
            replayed=False,
            created_at=datetime.now(UTC),
        )
        await self._write(response_id, lambda connection: connection.execute(row))

    async def share(self, response_id: str, key_id: str) -> None:
        """A cache hit replayed the response to `key_id`: it may reach it too. Nothing
        changes for a response unknown here, nor for a key that already may."""
        table = native_responses.c
        made = select(
            table.id,
            literal(key_id, String()),
            table.provider,
            table.account,
            true(),
            literal(datetime.now(UTC), DateTime(timezone=True)),
        ).where(table.id == response_id)
        columns = ["id", "key_id", "provider", "account", "replayed", "created_at"]

        def write(connection: Connection) -> None:
            dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
            shared = dialect.insert(native_responses).from_select(columns, made.limit(1))
            connection.execute(shared.on_conflict_do_nothing())

        await self._write(response_id, write)

    async def _write(self, response_id: str, work: Callable[[Connection], object]) -> None:
        def write(connection: Connection) -> None:
            if connection.dialect.name == "postgresql":
                # Seen by every session once committed; only the flush to disk is not
                # waited for (some milliseconds the answer would wait): a crash of the
                # server in that moment loses the reading back of this one response.
                connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
            work(connection)

        try:
            await self._writes.run(write)
        except Exception:
            # The answer still goes out: it was paid for. Only reading it back will fail.
            log.exception("could not remember where response %s lives", response_id)

    async def find(self, key_id: str, response_id: str) -> NativeResponse | None:
        """How the key reaches the response; failing that, how another key does (the
        caller refuses it); None: the response is unknown here."""
        table = native_responses.c
        query = (
            select(table.key_id, table.provider, table.account, table.replayed)
            .where(table.id == response_id)
            .order_by((table.key_id == key_id).desc())
            .limit(1)
        )
        row = await self._reads.run(lambda connection: connection.execute(query).first())
        return None if row is None else NativeResponse(*row)

    async def forget(self, response_id: str, key_id: str | None = None) -> None:
        """The key's way to the response forgotten; every key's, with no key."""
        which = native_responses.c.id == response_id
        if key_id is not None:
            which &= native_responses.c.key_id == key_id
        forgotten = delete(native_responses).where(which)
        await self._writes.run(lambda connection: connection.execute(forgotten))

    async def aclose(self) -> None:
        await self._writes.aclose()
        await self._reads.aclose()
