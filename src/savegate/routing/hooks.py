"""How the executor reports each upstream attempt: the interface metering implements.

The executor knows deployments, retries, timeouts and health; what an attempt costs is
not its business. It tells a `CallHooks` that an attempt started, and the attempt's
`AttemptHook` that its first byte came, which batches it streamed, and how it ended.
"""

from __future__ import annotations

from typing import Protocol

from savegate.core.errors import GatewayError
from savegate.core.media import MediaUse
from savegate.core.payload import Json
from savegate.core.route import Target
from savegate.wire.chunks import Chunks


class AttemptHook(Protocol):
    def first_byte(self) -> None:
        """A stream's first chunk arrived (not called for whole answers)."""
        ...

    def chunks(self, batch: Chunks) -> Chunks | None:
        """A streamed batch on its way to the client: what the client should see of it
        (None: nothing)."""
        ...

    def ended(
        self,
        *,
        answer: Json | None = None,
        use: MediaUse | None = None,
        error: GatewayError | None = None,
        cancelled: bool = False,
    ) -> None:
        """The attempt is over: with its whole `answer`, a stream's end (nothing given), a
        failure, or cancelled (the client went away). Called exactly once. `use` is what
        an image, audio or moderation call is billed by, instead of the answer's tokens."""
        ...


class CallHooks(Protocol):
    def attempt(self, target: Target) -> AttemptHook:
        """An attempt on `target` starts."""
        ...
