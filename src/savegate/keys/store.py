"""Persistent API keys: create, read, update, revoke, look up by hash."""

from __future__ import annotations

import secrets as _random
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from savegate.core.keys import ApiKey
from savegate.keys.secrets import hash_secret, hint, new_secret
from savegate.keys.spec import KeySettings, NewKey
from savegate.store.engine import AsyncConnection, AsyncEngine
from savegate.store.serial import Serial
from savegate.store.tables import api_keys, counters

_REVISION = "keys_revision"
DEFAULT_THRESHOLDS = (0.5, 0.8, 1.0)
_TOUCH = (
    update(api_keys).where(api_keys.c.id == bindparam("key")).values(last_used_at=bindparam("when"))
)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes; everything we write is UTC.
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _as_key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        hint=row.hint,
        is_admin=row.is_admin,
        created_at=_utc(row.created_at),  # type: ignore[arg-type]
        revoked_at=_utc(row.revoked_at),
        owner=row.owner,
        expires_at=_utc(row.expires_at),
        last_used_at=_utc(row.last_used_at),
        allowed_models=tuple(row.allowed_models) if row.allowed_models is not None else None,
        monthly_token_quota=row.monthly_token_quota,
        monthly_budget_usd=row.monthly_budget_usd,
        budget_mode=row.budget_mode,
        alert_thresholds=tuple(row.alert_thresholds or DEFAULT_THRESHOLDS),
        metadata=row._mapping["metadata"] or {},
        rpm=row.rpm,
        tpm=row.tpm,
        max_concurrent=row.max_concurrent,
        cache=row.cache,
    )


class KeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reads: Serial | None = None  # made by the first `revision`: only polls need it

    async def create(self, spec: NewKey) -> tuple[ApiKey, str]:
        """Create a key; the secret is returned here once and never again."""
        secret = new_secret()
        key_id = "key_" + _random.token_hex(8)
        values = {
            **spec.columns(),
            "id": key_id,
            "name": spec.name,
            "is_admin": spec.is_admin,
            "secret_hash": hash_secret(secret),
            "hint": hint(secret),
            "created_at": datetime.now(UTC),
            "budget_mode": spec.budget_mode or "hard",
        }
        async with self._engine.begin() as connection:
            await connection.execute(insert(api_keys).values(**values))
            await _bump_revision(connection)
        key = await self.get(key_id)
        assert key is not None
        return key, secret

    async def get(self, key_id: str) -> ApiKey | None:
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(select(api_keys).where(api_keys.c.id == key_id))
            ).first()
        return _as_key(row) if row else None

    async def list(
        self, *, include_revoked: bool = True, limit: int | None = None, offset: int = 0
    ) -> list[ApiKey]:
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [_as_key(row) for row in rows]

    async def count(self) -> int:
        query = select(func.count()).select_from(api_keys)
        async with self._engine.connect() as connection:
            return int((await connection.execute(query)).scalar_one())

    async def update(self, key_id: str, changes: KeySettings) -> ApiKey | None:
        values = changes.columns()
        if values:
            async with self._engine.begin() as connection:
                result = await connection.execute(
                    update(api_keys).where(api_keys.c.id == key_id).values(**values)
                )
                if result.rowcount == 0:
                    return None
                await _bump_revision(connection)
        return await self.get(key_id)

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
            await _bump_revision(connection)
        return True

    @staticmethod
    def touch(connection: Connection, last_used: dict[str, datetime]) -> None:
        """Record when keys were last used (in the usage writer's transaction)."""
        if last_used:
            rows = [{"key": key_id, "when": when} for key_id, when in last_used.items()]
            connection.execute(_TOUCH, rows)

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
        if self._reads is None:
            self._reads = Serial(self._engine, exclusive=False)
        query = select(counters.c.value).where(counters.c.name == _REVISION)
        return await self._reads.run(lambda connection: int(connection.scalar(query) or 0))

    async def aclose(self) -> None:
        if self._reads is not None:
            await self._reads.aclose()
            self._reads = None


async def _bump_revision(connection: AsyncConnection) -> None:
    result = await connection.execute(
        update(counters).where(counters.c.name == _REVISION).values(value=counters.c.value + 1)
    )
    if result.rowcount == 0:
        await connection.execute(insert(counters).values(name=_REVISION, value=1))
