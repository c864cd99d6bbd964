"""Reading recorded SSE streams: one byte string per event, framing kept."""

from __future__ import annotations

from pathlib import Path


def sse_events(path: Path) -> list[bytes]:
    text = path.read_bytes()
    return [block + b"\n\n" for block in text.split(b"\n\n") if block.strip()]
