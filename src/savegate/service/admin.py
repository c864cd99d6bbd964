"""The admin use cases for keys: every change reaches the running gateway at once.

A created, changed or revoked key is reloaded into the authenticator's copy (every
gateway's within `keys_refresh_seconds`), and limits travel with the key into the budget
ledger. A key that gains limits has its month reloaded from the usage table, since the
ledger did not follow it while it had none.
"""

from __future__ import annotations

from savegate.core.errors import NotFound
from savegate.core.keys import ApiKey
from savegate.keys.auth import Authenticator
from savegate.keys.spec import KeySettings, NewKey
from savegate.keys.store import KeyStore
from savegate.limits.ledger import Ledger, limited


def _no_key(key_id: str, active: bool = False) -> NotFound:
    return NotFound(
        f"No {'active ' if active else ''}key with id '{key_id}'.", code="key_not_found"
    )


class KeyAdmin:
    def __init__(self, keys: KeyStore, auth: Authenticator, budgets: Ledger) -> None:
        self._keys = keys
        self._auth = auth
        self._budgets = budgets

    async def list(self, *, include_revoked: bool, limit: int, offset: int) -> list[ApiKey]:
        return await self._keys.list(include_revoked=include_revoked, limit=limit, offset=offset)

    async def get(self, key_id: str) -> ApiKey:
        found = await self._keys.get(key_id)
        if found is None:
            raise _no_key(key_id)
        return found

    async def create(self, spec: NewKey) -> tuple[ApiKey, str]:
        """The new key and its secret, which is never available again."""
        created, secret = await self._keys.create(spec)
        await self._auth.reload()
        return created, secret

    async def update(self, key_id: str, changes: KeySettings) -> ApiKey:
        before = await self._keys.get(key_id)
        updated = await self._keys.update(key_id, changes)
        if before is None or updated is None:
            raise _no_key(key_id)
        await self._auth.reload()
        if limited(updated) and not limited(before):
            await self._budgets.forget(updated.id)
        return updated

    async def revoke(self, key_id: str) -> None:
        if not await self._keys.revoke(key_id):
            raise _no_key(key_id, active=True)
        await self._auth.reload()
