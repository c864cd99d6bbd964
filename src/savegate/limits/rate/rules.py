"""The admission rule every backend applies to a key's sliding logs (lua.py is the same rule
in Lua): what trips, how long until it would not, what the headers report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from savegate.limits.rate.model import CONCURRENCY_RETRY, Grant, LimitName, RateLimits, Usage


class Reserved(Protocol):
    @property
    def at(self) -> float: ...
    @property
    def tokens(self) -> int: ...


class Log(Protocol):
    """A key's state over the last window, logs oldest first."""

    @property
    def requests(self) -> Sequence[float]: ...  # admission times counted against rpm
    @property
    def reservations(self) -> Sequence[Reserved]: ...  # counted against tpm
    @property
    def tokens(self) -> int: ...  # the reservations' sum
    @property
    def in_flight(self) -> int: ...


def refusal(
    log: Log, limits: RateLimits, tokens: int, now: float, window: float
) -> tuple[LimitName, float] | None:
    """The full limit that waits longest (the first on a tie) with the seconds until it
    would let this request in, or None to admit it."""
    trips: list[tuple[LimitName, float]] = []
    if limits.max_concurrent is not None and log.in_flight >= limits.max_concurrent:
        trips.append(("max_concurrent", CONCURRENCY_RETRY))
    if limits.rpm is not None and len(log.requests) >= limits.rpm:
        # The request that must leave so that only rpm - 1 remain.
        oldest = log.requests[len(log.requests) - limits.rpm]
        trips.append(("rpm", oldest + window - now))
    if limits.tpm is not None and log.tokens + tokens > limits.tpm:
        left, seconds = log.tokens, 0.0
        for reservation in log.reservations:
            left -= reservation.tokens
            seconds = reservation.at + window - now
            if left + tokens <= limits.tpm:
                break
        trips.append(("tpm", seconds))
    worst: tuple[LimitName, float] | None = None
    for name, seconds in trips:
        if worst is None or seconds > worst[1]:
            worst = (name, seconds)
    return worst


def usage(log: Log, now: float, window: float) -> Usage:
    return Usage(
        requests=len(log.requests),
        tokens=log.tokens,
        in_flight=log.in_flight,
        requests_reset=log.requests[0] + window - now if log.requests else 0.0,
        tokens_reset=log.reservations[0].at + window - now if log.reservations else 0.0,
    )


def grant(key_id: str, permit_id: str, limits: RateLimits, tokens: int) -> Grant | None:
    """What an admitted request holds: its reservation if the key has tpm, a slot if it has
    max_concurrent; None when there is nothing to settle."""
    reserved = tokens if limits.tpm is not None else None
    holds_slot = limits.max_concurrent is not None
    if reserved is None and not holds_slot:
        return None
    return Grant(key_id, permit_id, reserved, holds_slot)
