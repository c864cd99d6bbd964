"""The bytes of files (`/v1/files`), on disk: `<directory>/<file id>`.

One machine keeps them under its data directory; replicas share a directory (a network
file system) named in the config. A file appears whole or not at all: it is written to a
temporary name in the same directory and renamed into place, which is atomic there.
Disk work runs in threads, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import BinaryIO

CHUNK = 256 * 1024
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # an id is a file name, never a path


def well_formed(file_id: str) -> bool:
    return _SAFE_ID.fullmatch(file_id) is not None


class BlobWriter:
    """A file being written: `write` its bytes, then `commit` it under an id (or `discard`)."""

    def __init__(self, directory: Path, handle: BinaryIO, temp: Path) -> None:
        self._directory = directory
        self._handle = handle
        self._temp = temp
        self.size = 0

    async def write(self, data: bytes) -> None:
        if data:
            await asyncio.to_thread(self._handle.write, data)
            self.size += len(data)

    async def commit(self, file_id: str) -> None:
        await asyncio.to_thread(self._finish, self._directory / file_id)

    def _finish(self, final: Path) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self._temp, final)

    async def discard(self) -> None:
        await asyncio.to_thread(self._drop)

    def _drop(self) -> None:
        self._handle.close()
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()


class BlobStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, file_id: str) -> Path:
        if not well_formed(file_id):
            raise ValueError(f"not a file id: {file_id!r}")
        return self.directory / file_id

    async def writer(self) -> BlobWriter:
        def open_temp() -> tuple[BinaryIO, Path]:
            self.directory.mkdir(parents=True, exist_ok=True)
            temp = self.directory / f".tmp-{secrets.token_hex(8)}"
            return temp.open("xb"), temp

        handle, temp = await asyncio.to_thread(open_temp)
        return BlobWriter(self.directory, handle, temp)

    async def chunks(self, file_id: str) -> AsyncGenerator[bytes, None]:
        """The file's bytes, a chunk at a time. Raises FileNotFoundError at once (before
        the first chunk is asked for) when the file is gone."""
        handle = await asyncio.to_thread(self._path(file_id).open, "rb")
        return _read(handle)

    async def lines(self, file_id: str) -> AsyncGenerator[bytes, None]:
        """The file's lines, without their line ends."""
        handle = await asyncio.to_thread(self._path(file_id).open, "rb")
        return _lines(handle)

    async def delete(self, file_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self._path(file_id).unlink)


async def _read(handle: BinaryIO) -> AsyncGenerator[bytes, None]:
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            yield chunk
    finally:
        handle.close()


async def _lines(handle: BinaryIO) -> AsyncGenerator[bytes, None]:
    pending: list[bytes] = []  # a line's pieces: a long line is not copied per chunk
    async for chunk in _read(handle):
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            pending.append(chunk[start:end])
            yield b"".join(pending).removesuffix(b"\r")
            pending = []
            start = end + 1
        pending.append(chunk[start:])
    if tail := b"".join(pending):
        yield tail.removesuffix(b"\r")
