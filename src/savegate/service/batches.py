"""The Batch API's use cases: create, read, list and cancel a key's batches. The
batches themselves run in the background (`batch_runner.py`)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from savegate.core.errors import InvalidRequest, NotFound
from savegate.service.batch_native import NativeBatches
from savegate.service.files import FilesService
from savegate.store.batches import ACTIVE, BatchStore, public
from savegate.wire.batch import validate_batch_request


def not_found(batch_id: str) -> NotFound:
    return NotFound(f"No such Batch object: {batch_id}", param="batch_id")


class BatchService:
    def __init__(
        self,
        store: BatchStore,
        files: FilesService,
        window: float,
        wake: Callable[[], None],
        native: NativeBatches | None = None,
    ) -> None:
        self._native = native
        self._store = store
        self._files = files
        self._window = window
        self._wake = wake

    async def create(self, key_id: str, body: dict[str, Any]) -> dict[str, Any]:
        body = validate_batch_request(body)
        file = await self._files.get(key_id, body["input_file_id"], param="input_file_id")
        if file.purpose != "batch":
            raise InvalidRequest(
                f"The input file {file.id} must be uploaded with purpose 'batch'.",
                param="input_file_id",
            )
        batch_id = "batch_" + secrets.token_hex(12)
        upstream = None
        if self._native is not None:
            upstream = await self._native.prepare(key_id, batch_id, file.id, body["endpoint"])
        now = time.time()
        row = await self._store.create(
            {
                "id": batch_id,
                "upstream": upstream,
                "key_id": key_id,
                "endpoint": body["endpoint"],
                "input_file_id": file.id,
                "completion_window": body["completion_window"],
                "metadata": body.get("metadata"),
                "created_at": now,
                "expires_at": now + self._window,
            }
        )
        self._wake()
        return public(row)

    async def get(self, key_id: str, batch_id: str) -> dict[str, Any]:
        row = await self._store.get(key_id, batch_id)
        if row is None:
            raise not_found(batch_id)
        return public(row)

    async def browse(
        self, key_id: str, limit: int, after: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        rows, more = await self._store.browse(key_id, limit, after)
        return [public(row) for row in rows], more

    async def cancel(self, key_id: str, batch_id: str) -> dict[str, Any]:
        row = await self._store.cancel(key_id, batch_id)
        if row is None:
            raise not_found(batch_id)
        status = row["status"]
        if status not in ACTIVE and status != "cancelled":
            raise InvalidRequest(f"Cannot cancel a batch with status '{status}'.", param="batch_id")
        if status == "finalizing":
            raise InvalidRequest("Cannot cancel a batch that is finalizing.", param="batch_id")
        self._wake()
        return public(row)
