"""The metrics of several worker processes, summed: a directory of their snapshots.

The supervisor of `savegate serve --workers N` creates the directory for its run and
removes it at the end. Each worker replaces its own file (`worker-<pid>.json`) every
`WRITE_SECONDS` and whenever it answers a scrape, so whatever a scrape has shown is
in the files; the worker that answers a scrape sums every file. When a worker dies, the
supervisor renames its file `dead-<pid>.json` (`mark_dead`): its counters still count,
so no sum ever goes down, and its gauges (in flight, health) no longer do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import orjson

from savegate.observe.registry import Snapshot

WRITE_SECONDS = 1.0  # how stale another worker's figures may be in a scrape


class SnapshotDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls) -> SnapshotDir:
        return cls(tempfile.mkdtemp(prefix="savegate-metrics-"))

    def write(self, pid: int, snapshot: Snapshot) -> None:
        target = self.path / f"worker-{pid}.json"
        temporary = self.path / f".worker-{pid}.tmp"
        temporary.write_bytes(orjson.dumps(snapshot))
        os.replace(temporary, target)  # a reader sees the old file or the new, whole

    def read(self) -> list[tuple[Snapshot, bool]]:
        """Every process's snapshot, with whether the process is alive."""
        found: list[tuple[Snapshot, bool]] = []
        for path in sorted(self.path.glob("*.json")):
            try:
                found.append((orjson.loads(path.read_bytes()), path.name.startswith("worker-")))
            except FileNotFoundError:
                # Renamed by `mark_dead` since the listing: read it under its new name.
                with contextlib.suppress(FileNotFoundError):
                    found.append((orjson.loads((self.path / _dead(path.name)).read_bytes()), False))
        return found

    def mark_dead(self, pid: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path / f"worker-{pid}.json", self.path / f"dead-{pid}.json")

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _dead(name: str) -> str:
    return "dead-" + name.removeprefix("worker-")
