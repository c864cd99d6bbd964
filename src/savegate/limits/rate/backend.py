"""What a rate-limit store must do. The backends admit exactly the same requests."""

from __future__ import annotations

from typing import Protocol

from savegate.limits.rate.model import Decision, Grant, RateLimits


class RateBackend(Protocol):
    async def acquire(self, key_id: str, limits: RateLimits, tokens: int) -> Decision:
        """Admit (count the request, reserve `tokens`, take a slot) or refuse, atomically."""
        ...

    async def settle(self, grant: Grant, actual_tokens: int) -> None:
        """Replace the reservation by `actual_tokens` and free the slot. Never raises."""
        ...

    def abandon(self, grant: Grant) -> None:
        """A permit was garbage-collected unsettled: free its slot and keep its reservation.
        Called from a finalizer, so it must neither block nor raise."""
        ...

    async def aclose(self) -> None: ...
