"""At most one log line per interval, so an outage or a buggy caller cannot flood the log."""

from __future__ import annotations

import time


class Throttle:
    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = 0.0

    def ready(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self._interval
        return True
