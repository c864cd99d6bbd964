"""Uvicorn's httptools protocol, with a response's writes paired into one system call.

Uvicorn writes the status line and headers, each body part and the final chunk
terminator as separate socket writes: a streamed answer whose chunks arrive in one
upstream read cost four system calls, a JSON answer two. Here a write waits until the
next one and both go out in one call, so the headers travel with the first body part
and the last part with the terminator. A write that has no follower yet goes out at
the end of the current turn of the event loop: nothing waits longer than that.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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
