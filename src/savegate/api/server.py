"""Uvicorn's httptools protocol, with a response's writes paired into one system call
and a client's disconnect signalled to the request it interrupts; and uvicorn's server,
with a shutdown that ends what outlives its grace period visibly.

Uvicorn writes the status line and headers, each body part and the final chunk
terminator as separate socket writes: a streamed answer whose chunks arrive in one
upstream read cost four system calls, a JSON answer two. Here a write waits until the
next one and both go out in one call, so the headers travel with the first body part
and the last part with the terminator. A write that has no follower yet goes out at
the end of the current turn of the event loop: nothing waits longer than that.

A lost connection fires the `DisconnectSignal` each request finds in its scope, so the
application learns of it without a task of its own waiting on `receive`.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Protocol

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from savegate.api.http import DISCONNECT_EXTENSION, DisconnectSignal
from savegate.observe import logs


class _PairingTransport:
    """The connection's transport, with each write held for the next one (or the end of
    the loop turn)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if self._pending:
            self._pending.append(data)
            self._flush()
            return
        self._pending.append(data)
        self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(b"".join(pending))

    def close(self) -> None:
        self._flush()  # a response written just before close must still go out
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class PairedWritesProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_PairingTransport(transport, self.loop))  # type: ignore[arg-type]

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {DISCONNECT_EXTENSION: {"signal": DisconnectSignal()}}

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        interrupted = [cycle for cycle, _ in self.pipeline]
        if self.cycle is not None and not self.cycle.response_complete:
            interrupted.append(self.cycle)
        for cycle in interrupted:
            _signal(cycle).fire()


def _signal(cycle: RequestResponseCycle) -> DisconnectSignal:
    return cycle.scope["extensions"][DISCONNECT_EXTENSION]["signal"]  # type: ignore[return-value]


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
