"""Sample a Python process with py-spy and summarise where its time goes."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import Any


def record(
    pyspy: Path, pid: int, seconds: int, out: Path, rate: int = 250, gil: bool = True
) -> Path:
    """Start py-spy on `pid` for `seconds`; the caller drives load meanwhile. With `gil`,
    only the thread holding the GIL is sampled: a thread waiting for it, or in a queue,
    is not working (aiosqlite's worker would count 13-21% of samples at 2-5% of a core)."""
    argv = [
        str(pyspy),
        "record",
        "-p",
        str(pid),
        "-d",
        str(seconds),
        "-r",
        str(rate),
        "-f",
        "raw",
        "-o",
        str(out),
        "--nonblocking",
        *(["--gil"] if gil else []),
    ]
    subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).wait(seconds + 60)
    return out


def _frame(frame: str) -> str:
    """`func (path/to/module.py:123)` -> `func (module.py)`, dropping line numbers."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    marker = "site-packages/"
    if marker in file:
        file = file.split(marker, 1)[1]
    elif "/src/" in file:
        file = file.split("/src/", 1)[1]
    return f"{name} ({file})"


def summarise(collapsed: Path, top: int = 15, own_code: str = "(savegate/") -> dict[str, Any]:
    """Self sample shares per function, and inclusive shares of the project's own functions
    (entry points left out), from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            _frame(f)
            for f in stack.split(";")
            if not f.startswith("process ") and not f.startswith("thread ")
        ]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if own_code in frame and "cli/" not in frame and "__init__" not in frame:
                incl[frame] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {"samples": total, "self": share(own), "inclusive": share(incl)}
