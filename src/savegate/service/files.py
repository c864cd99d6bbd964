"""Files (`/v1/files`): uploaded by a key, seen and deleted only by it; batches read
their input from them and write their output into new ones."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncGenerator

from savegate.core.errors import InvalidRequest, NotFound
from savegate.store.blobs import BlobStore, BlobWriter, well_formed
from savegate.store.files import FileStore, StoredFile
from savegate.store.pages import Order

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MAX_FILENAME = 255
MIN_EXPIRY, MAX_EXPIRY = 3600, 2_592_000  # OpenAI's bounds on `expires_after.seconds`


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


def not_found(file_id: str, param: str = "id") -> NotFound:
    return NotFound(f"No such File object: {file_id}", param=param)


class FilesService:
    def __init__(self, store: FileStore, blobs: BlobStore, max_bytes: int) -> None:
        self._store = store
        self._blobs = blobs
        self.max_bytes = max_bytes

    async def writer(self) -> BlobWriter:
        return await self._blobs.writer()

    async def save(
        self,
        key_id: str,
        writer: BlobWriter,
        filename: str,
        purpose: str,
        expires_after: int | None = None,
    ) -> StoredFile:
        """Make an uploaded file visible: its bytes in place, then its row."""
        try:
            if purpose not in PURPOSES:
                raise InvalidRequest(
                    f"Invalid purpose '{purpose}': expected one of {', '.join(PURPOSES)}.",
                    param="purpose",
                )
            if not filename or len(filename) > MAX_FILENAME:
                raise InvalidRequest(
                    f"The file needs a name of 1 to {MAX_FILENAME} characters.", param="file"
                )
            if expires_after is not None and not MIN_EXPIRY <= expires_after <= MAX_EXPIRY:
                raise InvalidRequest(
                    f"'expires_after.seconds' must be between {MIN_EXPIRY} and {MAX_EXPIRY}.",
                    param="expires_after.seconds",
                )
        except InvalidRequest:
            await writer.discard()
            raise
        now = time.time()
        file = StoredFile(
            new_file_id(),
            key_id,
            purpose,
            filename,
            writer.size,
            now,
            now + expires_after if expires_after is not None else None,
        )
        await writer.commit(file.id)
        await self._store.add(file)
        return file

    async def get(self, key_id: str, file_id: str, param: str = "id") -> StoredFile:
        file = await self._store.get(key_id, file_id) if well_formed(file_id) else None
        if file is None:
            raise not_found(file_id, param)
        return file

    async def browse(
        self, key_id: str, purpose: str | None, limit: int, after: str | None, order: Order
    ) -> tuple[list[StoredFile], bool]:
        return await self._store.browse(key_id, purpose, limit, after, order)

    async def delete(self, key_id: str, file_id: str) -> None:
        await self.get(key_id, file_id)
        if not await self._store.delete(key_id, file_id):
            raise not_found(file_id)
        await self._blobs.delete(file_id)

    async def content(
        self, key_id: str, file_id: str
    ) -> tuple[StoredFile, AsyncGenerator[bytes, None]]:
        file = await self.get(key_id, file_id)
        try:
            return file, await self._blobs.chunks(file_id)
        except FileNotFoundError:
            raise not_found(file_id) from None
