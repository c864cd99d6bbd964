"""An upstream that holds streams open: `python -m bench.slow_upstream PORT SSE_FILE`.

POST /hold/<seconds>/v1/chat/completions answers a chunked `text/event-stream` at once with
the first event of SSE_FILE, stays silent for <seconds>, then sends the rest and `[DONE]`.
`GET /stats` answers how many streams are held now and the most held at once since the
last `/stats`. Used for the idle-stream memory figure (long hold) and the 2,000-stream
test (short hold).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import cast

import httptools
import uvloop

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


class _Held:
    """Streams held open right now, and the most at once since the last `GET /stats`."""

    now = 0
    peak = 0

    @classmethod
    def change(cls, delta: int) -> None:
        cls.now += delta
        cls.peak = max(cls.peak, cls.now)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class _Conn(asyncio.Protocol):
    def __init__(self, first: bytes, rest: bytes) -> None:
        self.first, self.rest = first, rest
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport:
                self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        assert self.transport is not None
        parts = self.url.split(b"/")
        self.url = b""
        if parts[1:2] == [b"stats"]:
            body = json.dumps({"open": _Held.now, "peak": _Held.peak}).encode()
            _Held.peak = _Held.now
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            return
        try:
            hold = float(parts[2]) if len(parts) > 2 and parts[1] == b"hold" else 0.0
        except ValueError:
            hold = 0.0
        self.transport.write(HEAD + _chunk(self.first))
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(hold, self._finish)
        _Held.change(1)

    def _finish(self) -> None:
        self.timer = None
        _Held.change(-1)
        if self.transport and not self.transport.is_closing():
            self.transport.write(_chunk(self.rest) + b"0\r\n\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer:
            self.timer.cancel()
            self.timer = None
            _Held.change(-1)
        self.transport = None


async def _serve(port: int, sse: bytes) -> None:
    first, _, rest = sse.partition(b"\n\n")
    first += b"\n\n"
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Conn(first, rest), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    with open(path, "rb") as fh:
        sse = fh.read()
    uvloop.run(_serve(port, sse))


if __name__ == "__main__":
    main()
