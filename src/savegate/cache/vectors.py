"""The semantic cache in this process's memory: for each scope, a matrix of unit vectors
and their entries, searched with one matrix-vector product (their cosine similarities).

Rows are added in the order they come (this process's own at once, the others' as they
are read from the table), expire by their deadline and are bounded in number: `prune`
drops the expired and the oldest beyond the bound, compacting each matrix once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from savegate.cache.entry import Entry

Vector = NDArray[np.float32]
_FIRST = 8  # rows a new scope has room for; doubled as it fills


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class Found:
    entry: Entry
    similarity: float


class _Block:
    """One scope's rows."""

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self.count = 0
        self.vectors = np.empty((_FIRST, dimensions), np.float32)
        self.expires = np.empty(_FIRST, np.float64)
        self.serials = np.empty(_FIRST, np.int64)
        self.entries: list[Entry] = []
        self.keys: list[bytes] = []
        self.texts: dict[bytes, int] = {}  # a text's key → the newest row with that text

    def add(self, vector: Vector, key: bytes, entry: Entry, expires: float, serial: int) -> None:
        if self.count == len(self.expires):
            self._resize(2 * self.count)
        at = self.count
        self.vectors[at] = vector
        self.expires[at] = expires
        self.serials[at] = serial
        self.entries.append(entry)
        self.keys.append(key)
        self.texts[key] = at
        self.count += 1

    def _resize(self, size: int) -> None:
        count = self.count
        vectors = np.empty((size, self.dimensions), np.float32)
        vectors[:count] = self.vectors[:count]
        expires = np.empty(size, np.float64)
        expires[:count] = self.expires[:count]
        serials = np.empty(size, np.int64)
        serials[:count] = self.serials[:count]
        self.vectors, self.expires, self.serials = vectors, expires, serials

    def nearest(self, vector: Vector, now: float) -> tuple[int, float]:
        count = self.count
        similarities = self.vectors[:count] @ vector
        similarities[self.expires[:count] <= now] = -2.0  # below any cosine: never a match
        best = int(np.argmax(similarities))
        return best, float(similarities[best])

    def keep(self, live: NDArray[np.bool_]) -> None:
        """Keep only the rows `live` marks, in their order."""
        rows = np.flatnonzero(live)
        kept = len(rows)
        self.vectors[:kept] = self.vectors[rows]
        self.expires[:kept] = self.expires[rows]
        self.serials[:kept] = self.serials[rows]
        self.entries = [self.entries[row] for row in rows]
        self.keys = [self.keys[row] for row in rows]
        self.texts = {key: at for at, key in enumerate(self.keys)}
        self.count = kept


class VectorIndex:
    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._blocks: dict[str, _Block] = {}
        self._serial = 0

    def __len__(self) -> int:
        return sum(block.count for block in self._blocks.values())

    def add(self, scope: str, vector: Vector, key: bytes, entry: Entry, expires: float) -> None:
        """A row: `vector` of unit length, `key` its text's (`text_key`)."""
        block = self._blocks.get(scope)
        if block is None:
            block = self._blocks[scope] = _Block(len(vector))
        elif block.dimensions != len(vector):
            return  # not comparable with this scope's vectors
        self._serial += 1
        block.add(vector, key, entry, expires, self._serial)

    def same_text(self, scope: str, key: bytes, now: float) -> Entry | None:
        """A live row of `scope` whose text is exactly the one `key` stands for."""
        block = self._blocks.get(scope)
        at = block.texts.get(key) if block is not None else None
        if block is None or at is None or block.expires[at] <= now:
            return None
        return block.entries[at]

    def nearest(self, scope: str, vector: Vector, now: float) -> Found | None:
        """The live row of `scope` most similar to `vector`, if any."""
        block = self._blocks.get(scope)
        if block is None or block.dimensions != len(vector):
            return None
        at, similarity = block.nearest(vector, now)
        if similarity < -1.0:
            return None
        return Found(block.entries[at], similarity)

    def prune(self, now: float) -> None:
        """Drop the expired rows, and the oldest beyond `max_entries`."""
        blocks = self._blocks
        total = len(self)
        cutoff = None
        if total > self._max:
            serials = np.concatenate([b.serials[: b.count] for b in blocks.values()])
            cutoff = np.partition(serials, total - self._max)[total - self._max]
        for scope, block in list(blocks.items()):
            live = block.expires[: block.count] > now
            if cutoff is not None:
                live &= block.serials[: block.count] >= cutoff
            if not live.all():
                block.keep(live)
            if block.count == 0:
                del blocks[scope]
