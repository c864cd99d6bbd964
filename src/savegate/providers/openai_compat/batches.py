"""OpenAI's own Files and Batch APIs, for forwarding a batch upstream (`batch: native`):
upload its input, create, read and cancel the upstream batch, and download its results."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from savegate.core.errors import ProviderError
from savegate.providers.http import HttpUpstream, Response
from savegate.providers.openai_compat.auth import request_headers

_TAG = "savegate_batch_id"
_FIND_LIMIT = 100  # OpenAI's largest page


class UpstreamBatches:
    def __init__(self, name: str, http: HttpUpstream, key: str | None) -> None:
        self.name = name
        self._http = http
        self._key = key

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        return request_headers(self._key, content_type)

    async def _json(self, response: Response) -> dict[str, Any]:
        raw = await self._http.read(response)
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ProviderError(f"The upstream provider '{self.name}' sent invalid JSON.") from exc
        if not isinstance(value, dict):
            raise ProviderError(f"The upstream provider '{self.name}' sent an unexpected answer.")
        return value

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        raw = orjson.dumps(body) if body is not None else b""
        headers = self._headers("application/json" if body is not None else None)
        return await self._json(await self._http.open(path, raw, headers, method=method))

    async def upload(self, data: bytes, filename: str) -> str:
        """Upload a batch input file; the upstream's file id."""
        boundary = "savegate-" + secrets.token_hex(12)
        head = (
            f'--{boundary}\r\ncontent-disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f"--{boundary}\r\ncontent-disposition: form-data; "
            f'name="file"; filename="{filename}"\r\n'
            "content-type: application/jsonl\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        headers = self._headers(f"multipart/form-data; boundary={boundary}")
        response = await self._http.open("/files", [head, data, tail], headers)
        return self._id(await self._json(response))

    async def create(
        self, input_file_id: str, endpoint: str, window: str, ours: str
    ) -> dict[str, Any]:
        """Create the upstream batch, tagged in its metadata with our batch id `ours`."""
        body = {
            "input_file_id": input_file_id,
            "endpoint": endpoint,
            "completion_window": window,
            "metadata": {_TAG: ours},
        }
        answer: dict[str, Any] = await self._call("POST", "/batches", body)
        self._id(answer)
        return answer

    async def find(self, ours: str) -> str | None:
        """The upstream batch already created for our batch `ours`, among the newest."""
        answer = await self._call("GET", f"/batches?limit={_FIND_LIMIT}")
        for batch in answer.get("data") or []:
            if isinstance(batch, dict) and (batch.get("metadata") or {}).get(_TAG) == ours:
                return self._id(batch)
        return None

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call("GET", f"/batches/{batch_id}")
        return answer

    async def cancel(self, batch_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call("POST", f"/batches/{batch_id}/cancel", {})
        return answer

    async def download(self, file_id: str, write: Callable[[bytes], Awaitable[None]]) -> None:
        """A file's content, passed to `write` read by read, never held whole."""
        path = f"/files/{file_id}/content"
        response = await self._http.open(path, b"", self._headers(), None, "GET")
        try:
            while data := await self._http.next_read(response):
                await write(data)
        finally:
            response.release()

    def _id(self, answer: dict[str, Any]) -> str:
        value = answer.get("id")
        if not isinstance(value, str) or not value:
            raise ProviderError(f"The upstream provider '{self.name}' sent no id.")
        return value
