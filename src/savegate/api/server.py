"""Uvicorn's httptools protocol, with the writes of one event-loop turn sent together.

Uvicorn writes the status line and headers, each body part and the final chunk
terminator as separate socket writes: a streamed answer whose chunks arrive in one
upstream read cost four system calls, a JSON answer two. Writes made during one turn
of the loop are gathered here and go out in one call at the end of that turn, so the
headers and the first chunk also reach the client in the same packet. Nothing waits
longer than the current turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _GatheringTransport:
    """The connection's transport, with `write()` deferred to the end of the loop turn."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(b"".join(pending))

    def close(self) -> None:
        self._flush()  # a response written just before close must still go out
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GatheredWritesProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_GatheringTransport(transport, self.loop))  # type: ignore[arg-type]
