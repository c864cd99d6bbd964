"""Errors of the stores the gateway shares with other processes (the database, Redis),
counted where they are caught and handled, so that the metrics can report them.

One table per process, like the logging configuration: the places that catch a store's
errors are many and deep, and a count is all they owe anyone.
"""

from __future__ import annotations

from collections import Counter

# (store, component) → errors so far: ("redis", "rate_limits"), ("database", "usage"), …
STORE_ERRORS: Counter[tuple[str, str]] = Counter()


def store_failed(store: str, component: str) -> None:
    STORE_ERRORS[store, component] += 1
