"""File metadata: who owns a file, its purpose, name and size. The bytes are in
`store/blobs.py`; a file exists for the API once its row is here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, or_, select

from savegate.store.engine import AsyncConnection, AsyncEngine
from savegate.store.pages import Order, page
from savegate.store.tables import files


@dataclass(frozen=True, slots=True)
class StoredFile:
    id: str
    key_id: str
    purpose: str
    filename: str
    bytes: int
    created_at: float
    expires_at: float | None = None

    def public(self) -> dict[str, Any]:
        """OpenAI's file object (`expires_at` only when the file expires)."""
        shown: dict[str, Any] = {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": int(self.created_at),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }
        if self.expires_at is not None:
            shown["expires_at"] = int(self.expires_at)
        return shown


def _file(row: Any) -> StoredFile:
    return StoredFile(
        row.id, row.key_id, row.purpose, row.filename, row.bytes, row.created_at, row.expires_at
    )


def _live(now: float) -> Any:
    return or_(files.c.expires_at.is_(None), files.c.expires_at > now)


async def insert_file(connection: AsyncConnection, file: StoredFile) -> None:
    await connection.execute(
        insert(files).values(
            id=file.id,
            key_id=file.key_id,
            purpose=file.purpose,
            filename=file.filename,
            bytes=file.bytes,
            created_at=file.created_at,
            expires_at=file.expires_at,
        )
    )


class FileStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, file: StoredFile) -> None:
        async with self._engine.begin() as connection:
            await insert_file(connection, file)

    async def get(self, key_id: str, file_id: str) -> StoredFile | None:
        """The key's file, or None: another key's files, and expired ones, are invisible."""
        query = select(files).where(
            files.c.id == file_id, files.c.key_id == key_id, _live(time.time())
        )
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return _file(row) if row is not None else None

    async def browse(
        self, key_id: str, purpose: str | None, limit: int, after: str | None, order: Order
    ) -> tuple[list[StoredFile], bool]:
        """A page of the key's files by creation time, and whether more follow."""
        where = [files.c.key_id == key_id, _live(time.time())]
        if purpose is not None:
            where.append(files.c.purpose == purpose)
        async with self._engine.connect() as connection:
            rows, more = await page(connection, files, where, limit, after, order)
        return [_file(row) for row in rows], more

    async def delete(self, key_id: str, file_id: str) -> bool:
        owned = (files.c.id == file_id) & (files.c.key_id == key_id)
        async with self._engine.begin() as connection:
            result = await connection.execute(delete(files).where(owned))
        return bool(result.rowcount)
