"""Batches in the database: their state, the lines done, and the lease that lets one
process at a time run a batch.

A process takes a batch with one conditional UPDATE (free, or its lease run out) and
renews the lease while it runs it; every write it makes about the batch is conditional
on still holding it, so a process that lost its lease (paused, cut off) changes nothing.
A line is done when its row is in `batch_lines`, written in the same transaction as the
batch's counts and the line's usage rows: a line counts, and is metered, at most once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from savegate.store.engine import AsyncConnection, AsyncEngine
from savegate.store.files import StoredFile, insert_file
from savegate.store.pages import page
from savegate.store.tables import BATCH_TIMES, BATCH_TOKENS, batch_lines, batches

ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")
CANCELLABLE = ("validating", "in_progress")
Row = Mapping[str, Any]
Extra = Callable[[AsyncConnection], Awaitable[None]]
_PAGE = 1000


def public(row: Row) -> dict[str, Any]:
    """OpenAI's batch object; the optional fields only once they have a value."""
    tokens = {name: row[name] for name in BATCH_TOKENS}
    optional = {name: row[name] for name in ("errors", "output_file_id", "error_file_id")}
    times = {name: int(row[name]) for name in BATCH_TIMES if row[name] is not None}
    return {
        "id": row["id"],
        "object": "batch",
        "endpoint": row["endpoint"],
        "input_file_id": row["input_file_id"],
        "completion_window": row["completion_window"],
        "status": row["status"],
        "created_at": int(row["created_at"]),
        **{name: value for name, value in optional.items() if value is not None},
        **times,
        "request_counts": {
            "total": row["total"],
            "completed": row["completed"],
            "failed": row["failed"],
        },
        "usage": {
            "input_tokens": tokens["input_tokens"],
            "input_tokens_details": {"cached_tokens": tokens["cached_tokens"]},
            "output_tokens": tokens["output_tokens"],
            "output_tokens_details": {"reasoning_tokens": tokens["reasoning_tokens"]},
            "total_tokens": tokens["input_tokens"] + tokens["output_tokens"],
        },
        "metadata": row["metadata"],
    }


class BatchStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, values: dict[str, Any]) -> Row:
        row = {
            "status": "validating",
            "total": 0,
            "completed": 0,
            "failed": 0,
            **{name: 0 for name in BATCH_TOKENS},
            **values,
        }
        async with self._engine.begin() as connection:
            await connection.execute(insert(batches).values(**row))
        found = await self.get(row["key_id"], row["id"])
        assert found is not None
        return found

    async def get(self, key_id: str, batch_id: str) -> Row | None:
        """The key's batch, or None: other keys' batches are invisible."""
        query = select(batches).where(batches.c.id == batch_id, batches.c.key_id == key_id)
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return dict(row._mapping) if row is not None else None

    async def load(self, batch_id: str) -> Row | None:
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(select(batches).where(batches.c.id == batch_id))
            ).first()
        return dict(row._mapping) if row is not None else None

    async def browse(self, key_id: str, limit: int, after: str | None) -> tuple[list[Row], bool]:
        async with self._engine.connect() as connection:
            rows, more = await page(connection, batches, [batches.c.key_id == key_id], limit, after)
        return [dict(row._mapping) for row in rows], more

    async def cancel(self, key_id: str, batch_id: str) -> Row | None:
        """Ask for the batch to stop; its runner finishes the lines in flight, then
        writes what was done. A batch past running is left as it is."""
        owned = (batches.c.id == batch_id) & (batches.c.key_id == key_id)
        async with self._engine.begin() as connection:
            await connection.execute(
                update(batches)
                .where(owned, batches.c.status.in_(CANCELLABLE))
                .values(status="cancelling", cancelling_at=time.time())
            )
        return await self.get(key_id, batch_id)

    async def claimable(self) -> list[str]:
        """Batches that need a runner: not ended, and nobody's lease on them."""
        now = time.time()
        query = select(batches.c.id).where(
            batches.c.status.in_(ACTIVE),
            batches.c.runner.is_(None) | (batches.c.lease_until < now),
        )
        async with self._engine.connect() as connection:
            return list((await connection.execute(query.order_by(batches.c.created_at))).scalars())

    async def claim(self, batch_id: str, runner: str, lease: float) -> bool:
        now = time.time()
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(batches)
                .where(
                    batches.c.id == batch_id,
                    batches.c.status.in_(ACTIVE),
                    batches.c.runner.is_(None)
                    | (batches.c.lease_until < now)
                    | (batches.c.runner == runner),
                )
                .values(runner=runner, lease_until=now + lease)
            )
        return bool(result.rowcount)

    async def renew(self, batch_id: str, runner: str, lease: float) -> str | None:
        """Extend the lease; the batch's status, or None when the lease is lost."""
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(batches)
                .where(batches.c.id == batch_id, batches.c.runner == runner)
                .values(lease_until=time.time() + lease)
            )
            if not result.rowcount:
                return None
            query = select(batches.c.status).where(batches.c.id == batch_id)
            status: str = (await connection.execute(query)).scalar_one()
        return status

    async def release(self, batch_id: str, runner: str) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                update(batches)
                .where(batches.c.id == batch_id, batches.c.runner == runner)
                .values(runner=None, lease_until=None)
            )

    async def change(
        self,
        batch_id: str,
        runner: str,
        values: dict[str, Any],
        files: tuple[StoredFile, ...] = (),
        expect: str | None = None,
        extra: Extra | None = None,
    ) -> bool:
        """Update the batch (and add the files it wrote, and `extra`, its usage rows) if
        `runner` still holds it, and it is still in status `expect`, if given."""
        where = [batches.c.id == batch_id, batches.c.runner == runner]
        if expect is not None:
            where.append(batches.c.status == expect)
        async with self._engine.begin() as connection:
            result = await connection.execute(update(batches).where(*where).values(**values))
            if not result.rowcount:
                await connection.rollback()
                return False
            for file in files:
                await insert_file(connection, file)
            if extra is not None:
                await extra(connection)
        return True

    async def done_lines(self, batch_id: str) -> set[int]:
        query = select(batch_lines.c.line).where(batch_lines.c.batch_id == batch_id)
        async with self._engine.connect() as connection:
            return set((await connection.execute(query)).scalars())

    async def finish_line(
        self,
        batch_id: str,
        runner: str,
        line: int,
        ok: bool,
        result: str,
        tokens: dict[str, int],
        extra: Extra,
    ) -> bool:
        """Record a line as done, with its counts and `extra` (its usage rows), in one
        transaction; False (nothing written) if it was done already or the lease is lost."""
        counted = "completed" if ok else "failed"
        try:
            async with self._engine.begin() as connection:
                await connection.execute(
                    insert(batch_lines).values(batch_id=batch_id, line=line, ok=ok, result=result)
                )
                values = {name: batches.c[name] + tokens.get(name, 0) for name in BATCH_TOKENS}
                changed = await connection.execute(
                    update(batches)
                    .where(batches.c.id == batch_id, batches.c.runner == runner)
                    .values(**values, **{counted: batches.c[counted] + 1})
                )
                if not changed.rowcount:
                    await connection.rollback()
                    return False
                await extra(connection)
        except IntegrityError:
            return False
        return True

    async def results(self, batch_id: str) -> AsyncGenerator[tuple[int, bool, str], None]:
        """The lines done, in line order, a page at a time."""
        last = -1
        while True:
            query = (
                select(batch_lines.c.line, batch_lines.c.ok, batch_lines.c.result)
                .where(batch_lines.c.batch_id == batch_id, batch_lines.c.line > last)
                .order_by(batch_lines.c.line)
                .limit(_PAGE)
            )
            async with self._engine.connect() as connection:
                rows = (await connection.execute(query)).all()
            for line, ok, result in rows:
                yield line, ok, result
            if len(rows) < _PAGE:
                return
            last = rows[-1][0]
