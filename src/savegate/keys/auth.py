"""Authenticating requests against an in-memory copy of the active keys.

The hot path never waits on the database for a known key: the copy is reloaded
whenever the store's key revision changes (polled every `refresh_seconds`), so a key
revoked by the CLI or another replica is refused within that interval. An unknown
hash costs one indexed lookup, so a key created elsewhere works at once.

Secrets are compared only through their SHA-256 digests: a lookup's timing depends on
the digest, which an attacker cannot steer, never on the secret's bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from savegate.core.errors import AuthenticationFailed
from savegate.core.faults import store_failed
from savegate.core.keys import ApiKey
from savegate.keys.secrets import hash_secret, well_formed
from savegate.keys.store import KeyStore

log = logging.getLogger(__name__)

_MISSING = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
_INCORRECT = "Incorrect API key provided. Keys look like sk-savegate-… (44 characters)."
_REVOKED = "Invalid API key: this key is not active (revoked or unknown)."


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class Authenticator:
    def __init__(self, store: KeyStore, refresh_seconds: float) -> None:
        self._store = store
        self._refresh_seconds = refresh_seconds
        self._keys: dict[str, ApiKey] = {}
        self._revision = -1
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._follow_changes(), name="savegate-keys-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._store.aclose()

    async def reload(self) -> None:
        revision = await self._store.revision()
        self._keys = await self._store.active_by_hash()
        self._revision = revision

    async def authenticate(self, secret: str | None) -> ApiKey:
        if not secret:
            raise AuthenticationFailed(_MISSING)
        if not well_formed(secret):
            raise AuthenticationFailed(_INCORRECT)
        digest = hash_secret(secret)
        key = self._keys.get(digest)
        if key is None:
            key = await self._store.find_active(digest)
            if key is None:
                raise AuthenticationFailed(_REVOKED)
            self._keys[digest] = key
        if key.expires_at is not None and key.expired(datetime.now(UTC)):
            raise AuthenticationFailed("This API key has expired.")
        return key

    async def _follow_changes(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                if await self._store.revision() != self._revision:
                    await self.reload()
            except Exception:  # the store may be briefly unavailable; keep serving
                store_failed("database", "keys")
                log.warning("could not refresh API keys from the store", exc_info=True)
