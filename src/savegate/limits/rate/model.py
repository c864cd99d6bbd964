"""What rate limiting passes around: limits, a backend's decision, the grant to settle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LimitName = Literal["rpm", "tpm", "max_concurrent"]

WINDOW = 60.0  # seconds: rpm and tpm count what was admitted in the last minute
# Slots free when requests finish, which no clock predicts; this is only a hint to retry.
CONCURRENCY_RETRY = 1.0


@dataclass(frozen=True, slots=True)
class RateLimits:
    """One key's limits; None means unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "max_concurrent"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 or None, not {value}")

    @property
    def unlimited(self) -> bool:
        return self.rpm is None and self.tpm is None and self.max_concurrent is None


@dataclass(frozen=True, slots=True)
class Usage:
    """A key's state as the decision saw it (including this request when it was admitted)."""

    requests: int  # requests in the window
    tokens: int  # tokens in the window, reservations included
    in_flight: int
    requests_reset: float  # seconds until the oldest counted request leaves the window
    tokens_reset: float  # seconds until the oldest counted tokens leave the window


@dataclass(frozen=True, slots=True)
class Grant:
    """What an admitted request holds and must give back on settle."""

    key_id: str
    permit_id: str
    reserved_tokens: int | None  # None when the key had no tpm at admission
    holds_slot: bool


@dataclass(frozen=True, slots=True)
class Decision:
    usage: Usage | None  # None when the backend could not tell (Redis down, failing open)
    grant: Grant | None = None  # set when admitted and there is something to settle
    tripped: LimitName | None = None  # set when refused
    retry_after: float = 0.0

    @property
    def admitted(self) -> bool:
        return self.tripped is None
