"""Stored Responses API conversations."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from savegate.store.tables import responses

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
