"""Persistent API keys: create, list, revoke, look up by hash."""

from __future__ import annotations

import secrets as _random
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from savegate.keys.model import ApiKey
from savegate.keys.secrets import hash_secret, hint, new_secret
from savegate.store.tables import api_keys, counters

_REVISION = "keys_revision"


def _as_key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        hint=row.hint,
        is_admin=row.is_admin,
        created_at=_utc(row.created_at),
        revoked_at=_utc(row.revoked_at) if row.revoked_at else None,
    )


def _utc(value: datetime) -> datetime:
    # SQLite returns naive datetimes; everything we write is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class KeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, name: str, *, is_admin: bool = False) -> tuple[ApiKey, str]:
        """Create a key; the secret is returned here once and never again."""
        secret = new_secret()
        key = ApiKey(
            id="key_" + _random.token_hex(8),
            name=name,
            hint=hint(secret),
            is_admin=is_admin,
            created_at=datetime.now(UTC),
        )
        async with self._engine.begin() as connection:
            await connection.execute(
                insert(api_keys).values(
                    id=key.id,
                    name=key.name,
                    secret_hash=hash_secret(secret),
                    hint=key.hint,
                    is_admin=key.is_admin,
                    created_at=key.created_at,
                )
            )
            await self._bump_revision(connection)
        return key, secret

    async def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        query = select(api_keys).order_by(api_keys.c.created_at)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [_as_key(row) for row in rows]

    async def count(self) -> int:
        async with self._engine.connect() as connection:
            return int(
                (await connection.execute(select(func.count()).select_from(api_keys))).scalar_one()
            )

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key for good. False when no such active key exists."""
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            if result.rowcount == 0:
                return False
            await self._bump_revision(connection)
        return True

    async def active_by_hash(self) -> dict[str, ApiKey]:
        query = select(api_keys).where(api_keys.c.revoked_at.is_(None))
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return {row.secret_hash: _as_key(row) for row in rows}

    async def find_active(self, secret_hash: str) -> ApiKey | None:
        query = select(api_keys).where(
            api_keys.c.secret_hash == secret_hash, api_keys.c.revoked_at.is_(None)
        )
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return _as_key(row) if row else None

    async def revision(self) -> int:
        query = select(counters.c.value).where(counters.c.name == _REVISION)
        async with self._engine.connect() as connection:
            return int((await connection.execute(query)).scalar() or 0)

    async def _bump_revision(self, connection: Any) -> None:
        result = await connection.execute(
            update(counters).where(counters.c.name == _REVISION).values(value=counters.c.value + 1)
        )
        if result.rowcount == 0:
            await connection.execute(insert(counters).values(name=_REVISION, value=1))
