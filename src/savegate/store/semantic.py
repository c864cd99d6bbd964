"""The semantic cache's table: rows written by every process and read back by id.

A process reads the rows above the last id it has seen, and once more the ids it skipped
over (`gaps`): on PostgreSQL a row may commit after one with a higher id.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, delete, insert, or_, select

from savegate.store.engine import AsyncEngine
from savegate.store.tables import semantic_cache as table

_COLUMNS = (table.c.id, table.c.scope, table.c.vector, table.c.text, table.c.answer)


@dataclass(frozen=True, slots=True)
class SemanticRow:
    id: int
    scope: str
    vector: bytes  # float32, unit length
    text: str
    answer: bytes  # the exact cache's encoding of an entry
    expires_at: float  # epoch seconds


class SemanticTable:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, rows: list[SemanticRow]) -> list[int]:
        """Write `rows` (their `id` unused) in one transaction; their new ids, in order."""
        now = datetime.now(UTC)
        ids = []
        async with self._engine.begin() as connection:
            for row in rows:
                statement = insert(table).returning(table.c.id)
                values = {
                    "scope": row.scope,
                    "vector": row.vector,
                    "text": row.text,
                    "answer": row.answer,
                    "created_at": now,
                    "expires_at": row.expires_at,
                    "size": len(row.answer),
                }
                ids.append(int((await connection.execute(statement, values)).scalar_one()))
        return ids

    async def newest(self, now: float, limit: int) -> list[SemanticRow]:
        """The `limit` newest live rows, oldest first."""
        query = (
            select(*_COLUMNS, table.c.expires_at)
            .where(table.c.expires_at > now)
            .order_by(table.c.id.desc())
            .limit(limit)
        )
        return list(reversed(await self._rows(query)))

    async def since(
        self, last: int, gaps: Collection[int], now: float, limit: int
    ) -> list[SemanticRow]:
        """Live rows above `last` or among `gaps`, by id, at most `limit`."""
        above = table.c.id > last
        where = or_(above, table.c.id.in_(list(gaps))) if gaps else above
        query = (
            select(*_COLUMNS, table.c.expires_at)
            .where(where, table.c.expires_at > now)
            .order_by(table.c.id)
            .limit(limit)
        )
        return await self._rows(query)

    async def prune(self, now: float, keep: int) -> None:
        """Delete the expired rows and all but the `keep` newest."""
        cutoff = select(table.c.id).order_by(table.c.id.desc()).limit(1).offset(keep)
        async with self._engine.begin() as connection:
            await connection.execute(delete(table).where(table.c.expires_at <= now))
            await connection.execute(delete(table).where(table.c.id <= cutoff.scalar_subquery()))

    async def _rows(self, query: Select[Any]) -> list[SemanticRow]:
        async with self._engine.connect() as connection:
            result = await connection.execute(query)
            return [SemanticRow(*row) for row in result.all()]
