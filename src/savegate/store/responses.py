"""Stored Responses API conversations.

Saving happens off the request path: a finished response is cached in memory at once
(so a follow-up with `previous_response_id` finds it) and written to the database by a
background task that shutdown waits for.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
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
    def __init__(self, engine: AsyncEngine, cache_size: int = 2048) -> None:
        self._engine = engine
        self._cache: OrderedDict[str, StoredResponse] = OrderedDict()
        self._cache_size = cache_size
        self._writes: set[asyncio.Task[None]] = set()

    def save(self, key_id: str, response: dict[str, Any], items: list[dict[str, Any]]) -> None:
        stored = StoredResponse(key_id, response, items)
        self._remember(response["id"], stored)
        task = asyncio.create_task(self._write(response["id"], stored))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, response_id: str, stored: StoredResponse) -> None:
        try:
            async with self._engine.begin() as connection:
                await connection.execute(
                    insert(responses).values(
                        id=response_id,
                        key_id=stored.key_id,
                        created_at=datetime.now(UTC),
                        response=stored.response,
                        input_items=stored.input_items,
                    )
                )
        except Exception:
            log.exception("could not store response %s", response_id)

    def _remember(self, response_id: str, stored: StoredResponse) -> None:
        self._cache[response_id] = stored
        self._cache.move_to_end(response_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def load(self, key_id: str, response_id: str) -> StoredResponse | None:
        """A response the key created, or None (another key's responses are invisible)."""
        stored = self._cache.get(response_id)
        if stored is None:
            query = select(responses).where(responses.c.id == response_id)
            async with self._engine.connect() as connection:
                row = (await connection.execute(query)).first()
            if row is None:
                return None
            stored = StoredResponse(row.key_id, row.response, row.input_items)
            self._remember(response_id, stored)
        return stored if stored.key_id == key_id else None

    async def delete(self, key_id: str, response_id: str) -> bool:
        if await self.load(key_id, response_id) is None:
            return False
        await self.flush()
        self._cache.pop(response_id, None)
        async with self._engine.begin() as connection:
            await connection.execute(delete(responses).where(responses.c.id == response_id))
        return True

    async def flush(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
