"""What a shared ledger's store does, each step atomic across every process (a Lua script
in Redis, one transaction in the database). `shared.py` drives the steps.

A month carries a generation, set when it is created. A process sends the generation it
knows with each call; a month it has not seen yet (Redis lost it and someone rebuilt it)
answers "stale", and the process first registers its running holds again, so that no
request still running is forgotten. A month being rebuilt is "loading": reservations wait,
settlements are counted and their request ids noted, so that the reload from the usage
table leaves those requests out instead of counting them twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from savegate.limits.ledger.base import Balance, Limits, Over, Reservation

# How long a settled hold is remembered: a process registering its holds again (with a
# list taken just before) must not bring back one settled meanwhile.
TOMBSTONE = 60.0

Status = Literal["ok", "over", "absent", "stale", "loading"]
Loaded = Literal["done", "again", "lost"]


@dataclass(frozen=True, slots=True)
class Reply:
    status: Status
    gen: str = ""  # the month's generation, when stale
    over: Over | None = None  # the limit a refused reservation would break
    balance: Balance = field(default_factory=Balance)  # before a refusal or a settlement
    after: Balance = field(default_factory=Balance)  # after a settlement
    partial: bool = False  # settled while loading: the balance lacks the reloaded part


@dataclass(frozen=True, slots=True)
class Claim:
    claimed: bool  # this process loads the month (else someone else does or did)
    gen: str


class LedgerStore(Protocol):
    kind: str  # "redis" or "database", for the error metrics

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """What it raises when it cannot be reached."""
        ...

    async def reserve(self, hold: Reservation, gen: str, limits: Limits, lease: float) -> Reply:
        """Check the limits and, if they allow, add the hold with a lease of `lease` s."""
        ...

    async def settle(
        self, hold: Reservation, gen: str, tokens: int, cost: float, request_id: str
    ) -> Reply:
        """Drop the hold (if it is still there) and add what the request used."""
        ...

    async def claim(
        self,
        key_id: str,
        period: datetime,
        gen: str,
        loader: str,
        holds: list[Reservation],
        lease: float,
        claim_for: float,
    ) -> Claim:
        """Create an absent month, loading, with these holds: this caller reloads it within
        `claim_for` s, else someone else may take over."""
        ...

    async def settled_while_loading(self, key_id: str, period: datetime) -> frozenset[str]: ...

    async def loaded(
        self, key_id: str, period: datetime, loader: str, seen: int, tokens: int, spend: float
    ) -> Loaded:
        """Add the reloaded totals and end the loading; "again" if requests other than the
        `seen` ones settled meanwhile, "lost" if another process took the loading over."""
        ...

    async def adopt(
        self, key_id: str, period: datetime, holds: list[Reservation], lease: float
    ) -> Reply:
        """Register these holds again (those already there stay as they are); the reply
        names the month's generation."""
        ...

    async def forget(self, key_id: str, period: datetime) -> None: ...

    async def aclose(self) -> None: ...
