"""Stored Responses API conversations, and where those a native upstream keeps live."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from savegate.store.serial import Serial
from savegate.store.tables import native_responses, responses

log = logging.getLogger(__name__)


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
    deleted one is gone everywhere."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

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
        query = select(responses).where(responses.c.id == response_id)
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


@dataclass(frozen=True, slots=True)
class NativeResponse:
    """A response a native upstream made and keeps: its provider, and which of the
    provider's upstream keys made it (a digest, `account`; None: it had none)."""

    key_id: str
    provider: str
    account: str | None


class NativeResponseStore:
    """Where each response a native upstream keeps was made, for every process: read by
    `GET`/`DELETE /v1/responses/{id}` on whichever worker or replica they reach."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # A row is written while its answer streams: on SQLite in one hop to a thread, not
        # the async driver's many hand-offs, each a turn of the event loop taken from it.
        self._writes = Serial(engine)

    async def remember(
        self, response_id: str, key_id: str, provider: str, account: str | None
    ) -> None:
        row = insert(native_responses).values(
            id=response_id,
            key_id=key_id,
            provider=provider,
            account=account,
            created_at=datetime.now(UTC),
        )

        def write(connection: Connection) -> None:
            if connection.dialect.name == "postgresql":
                # Seen by every session once committed; only the flush to disk is not
                # waited for (some milliseconds the answer would wait): a crash of the
                # server in that moment loses the reading back of this one response.
                connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
            connection.execute(row)

        try:
            await self._writes.run(write)
        except Exception:
            # The answer still goes out: it was paid for. Only reading it back will fail.
            log.exception("could not remember where response %s lives", response_id)

    async def find(self, key_id: str, response_id: str) -> NativeResponse | None:
        """Where a response the key created lives, or None (another key's are invisible)."""
        query = select(native_responses).where(native_responses.c.id == response_id)
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        if row is None or row.key_id != key_id:
            return None
        return NativeResponse(row.key_id, row.provider, row.account)

    async def forget(self, key_id: str, response_id: str) -> None:
        owned = (native_responses.c.id == response_id) & (native_responses.c.key_id == key_id)
        async with self._engine.begin() as connection:
            await connection.execute(delete(native_responses).where(owned))

    async def aclose(self) -> None:
        await self._writes.aclose()
