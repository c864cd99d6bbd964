"""Uvicorn's server, with a shutdown that ends what outlives its grace period visibly
(the connections it serves are `api/protocol.py`'s)."""

from __future__ import annotations

import asyncio
import socket
from typing import Protocol

import uvicorn

from savegate.observe import logs


class Drainable(Protocol):
    def drain(self, grace: float) -> asyncio.TimerHandle: ...


class DrainingServer(uvicorn.Server):
    """On SIGTERM uvicorn stops accepting, lets requests finish, and after its timeout
    cancels them silently: a stream would just stop, looking complete. Here the
    application cuts them itself when `grace` runs out, each with its dialect's error,
    so that uvicorn's own cancel (set a little later) finds nothing left."""

    def __init__(self, config: uvicorn.Config, app: Drainable, grace: float) -> None:
        super().__init__(config)
        self._app = app
        self._grace = grace

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        cut = self._app.drain(self._grace)
        try:
            await super().shutdown(sockets)
        finally:
            cut.cancel()
            # Uvicorn re-raises the signal it caught next, which ends the process at
            # once: what is queued for the log writer must be written now.
            logs.stop()
