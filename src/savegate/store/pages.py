"""Cursor pages (`limit`, `after`, `order`) over a table ordered by `created_at`, `id`,
as OpenAI's list endpoints page."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import Table, and_, or_, select

from savegate.store.engine import AsyncConnection

Order = Literal["asc", "desc"]


async def page(
    connection: AsyncConnection,
    table: Table,
    where: list[Any],
    limit: int,
    after: str | None,
    order: Order = "desc",
) -> tuple[list[Any], bool]:
    """Up to `limit` rows matching `where` that follow the row `after` (which must match
    `where` too: an unknown cursor is an empty page), and whether more follow."""
    created, ident = table.c.created_at, table.c.id
    if after is not None:
        query = select(created, ident).where(ident == after, *where)
        cursor = (await connection.execute(query)).first()
        if cursor is None:
            return [], False
        when, cursor_id = cursor
        if order == "desc":
            where = [*where, or_(created < when, and_(created == when, ident < cursor_id))]
        else:
            where = [*where, or_(created > when, and_(created == when, ident > cursor_id))]
    sort = [created.desc(), ident.desc()] if order == "desc" else [created, ident]
    query = select(table).where(*where).order_by(*sort).limit(limit + 1)
    rows = (await connection.execute(query)).all()
    return list(rows[:limit]), len(rows) > limit
