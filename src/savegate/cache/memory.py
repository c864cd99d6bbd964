"""The in-process store: an LRU bounded in bytes (each entry counted by its encoding)."""

from __future__ import annotations

import time
from collections import OrderedDict

from savegate.cache.entry import Entry


class MemoryCache:
    def __init__(self, ttl: float, max_bytes: int) -> None:
        self._ttl = ttl
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[float, Entry]] = OrderedDict()
        self.bytes = 0

    async def get(self, key: str) -> Entry | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires, entry = found
        if time.monotonic() >= expires:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    async def put(self, key: str, entry: Entry, raw: bytes) -> None:
        if entry.size > self._max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        while self._entries and self.bytes + entry.size > self._max_bytes:
            self._drop(next(iter(self._entries)))  # the least recently used
        self._entries[key] = (time.monotonic() + self._ttl, entry)
        self.bytes += entry.size

    def _drop(self, key: str) -> None:
        _, entry = self._entries.pop(key)
        self.bytes -= entry.size

    def __len__(self) -> int:
        return len(self._entries)

    async def claim(self, key: str) -> bool:
        return True

    async def release(self, key: str) -> None:
        return None

    async def aclose(self) -> None:
        self._entries.clear()
        self.bytes = 0
