"""Exact sliding-window limits for one process.

Each key keeps a log of its admission times (and token reservations) from the last window;
entries leave from the front as they age, so every request costs amortised O(1). No locks:
nothing here awaits, so asyncio runs each call to completion.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from savegate.limits.rate import rules
from savegate.limits.rate.model import WINDOW, Decision, Grant, RateLimits

_EVICT_PER_CALL = 2  # more than one per call, so idle keys are dropped faster than keys appear


@dataclass(slots=True)
class _Reservation:
    at: float
    tokens: int
    live: bool = True  # False once it has left the window and no longer counts


@dataclass(slots=True)
class _Key:
    touched: float
    requests: deque[float] = field(default_factory=deque)
    reservations: deque[_Reservation] = field(default_factory=deque)
    tokens: int = 0  # sum of the live reservations
    in_flight: int = 0
    unsettled: dict[str, _Reservation] = field(default_factory=dict)

    def expire(self, cutoff: float) -> None:
        while self.requests and self.requests[0] <= cutoff:
            self.requests.popleft()
        while self.reservations and self.reservations[0].at <= cutoff:
            gone = self.reservations.popleft()
            gone.live = False
            self.tokens -= gone.tokens

    @property
    def idle(self) -> bool:
        return not self.in_flight and not self.unsettled


class MemoryBackend:
    def __init__(self, *, window: float = WINDOW) -> None:
        """`window` is what rpm and tpm count over: a minute, shorter only in tests."""
        self._window = window
        self._keys: OrderedDict[str, _Key] = OrderedDict()  # least recently touched first
        self._ids = itertools.count()

    def __len__(self) -> int:
        """Keys currently tracked."""
        return len(self._keys)

    async def acquire(self, key_id: str, limits: RateLimits, tokens: int) -> Decision:
        now = time.monotonic()
        key = self._touch(key_id, now)
        self._evict(now - self._window)
        key.expire(now - self._window)
        refused = rules.refusal(key, limits, tokens, now, self._window)
        if refused is not None:
            tripped, wait = refused
            return Decision(rules.usage(key, now, self._window), tripped=tripped, retry_after=wait)
        permit_id = str(next(self._ids))
        if limits.rpm is not None:
            key.requests.append(now)
        if limits.tpm is not None:
            key.unsettled[permit_id] = reservation = _Reservation(now, tokens)
            key.reservations.append(reservation)
            key.tokens += tokens
        if limits.max_concurrent is not None:
            key.in_flight += 1
        grant = rules.grant(key_id, permit_id, limits, tokens)
        return Decision(rules.usage(key, now, self._window), grant=grant)

    async def settle(self, grant: Grant, actual_tokens: int) -> None:
        self._release(grant, actual_tokens)

    def abandon(self, grant: Grant) -> None:
        self._release(grant, grant.reserved_tokens or 0)

    async def aclose(self) -> None:
        self._keys.clear()

    def _touch(self, key_id: str, now: float) -> _Key:
        key = self._keys.get(key_id)
        if key is None:
            key = self._keys[key_id] = _Key(now)
        else:
            key.touched = now
            self._keys.move_to_end(key_id)
        return key

    def _evict(self, cutoff: float) -> None:
        """Drop keys untouched for a whole window: their logs are empty by then."""
        for _ in range(_EVICT_PER_CALL):
            if not self._keys:
                return
            key_id, key = next(iter(self._keys.items()))
            if key.touched > cutoff:
                return
            if key.idle:
                del self._keys[key_id]
            else:  # a request still running; its settle touches the key again
                self._keys.move_to_end(key_id)

    def _release(self, grant: Grant, actual_tokens: int) -> None:
        key = self._keys.get(grant.key_id)
        if key is None:  # only after aclose: keys with unsettled grants are never evicted
            return
        if grant.holds_slot:
            key.in_flight -= 1
        reservation = key.unsettled.pop(grant.permit_id, None)
        if reservation is not None and reservation.live:
            key.tokens += actual_tokens - reservation.tokens
            reservation.tokens = actual_tokens
        self._touch(grant.key_id, time.monotonic())
