"""One keep-alive HTTP/1.1 connection to an upstream: it writes a request in one call
and hands the response body over as it arrives.

The parsing is httptools (llhttp, the parser Node.js uses), the same one our server
side runs on. Reads that arrive while nobody is waiting are joined, so a consumer that
falls behind takes them in one piece; past `HIGH_WATER` bytes reading pauses until it
catches up.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from typing import cast

import httptools

HIGH_WATER = 256 * 1024
WRITE_SLICE = 256 * 1024  # an upload is written this much at a time, as the socket drains


class HttpError(Exception):
    """The upstream could not be reached or broke the exchange."""


class ConnectFailed(HttpError):
    pass


class ProxyError(ConnectFailed):
    """The proxy (`proxy`: its scheme, host and port, never its credentials) could not be
    reached or refused the request, with `status` if it answered. The message names
    neither the proxy nor the upstream, so clients may see it."""

    def __init__(self, message: str, proxy: str, status: int | None = None) -> None:
        super().__init__(message)
        self.proxy = proxy
        self.status = status


class ReadTimeout(HttpError, TimeoutError):
    pass


class ConnectionBroken(HttpError):
    """The connection closed (or the response was malformed) before the response ended."""


class Connection(asyncio.Protocol):
    """Carries one request at a time. `fresh` is true until its first response."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float) -> None:
        self._loop = loop
        self._read_timeout = read_timeout
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.fresh = True
        self.closed = False
        self.bytes_received = 0
        # The exchange in flight.
        self._busy = False
        self._head: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._body: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._complete = False
        self._failure: HttpError | None = None
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._inflate: zlib._Decompress | None = None
        self._drained: asyncio.Future[None] | None = None  # set while writing is paused
        self.status = 0
        self.headers: dict[str, str] = {}
        self._header_name = ""

    # --- the exchange ---------------------------------------------------------------

    async def send(self, request: bytes | Sequence[bytes | memoryview]) -> None:
        """Write the request and wait for the response head (status and headers). A
        request in parts is written a slice at a time, each once the socket has taken the
        last: the transport never holds a copy of a whole upload."""
        assert self._transport is not None and not self._busy
        if self.closed:  # lost while it sat idle, before the pool heard of it
            raise ConnectionBroken("the upstream closed the connection")
        self._busy = True
        self._complete = False
        self._failure = None
        self._body, self._buffered = [], 0
        self.status, self.headers, self._inflate = 0, {}, None
        self._head = self._loop.create_future()
        self._last_read = self._loop.time()
        self._timer = self._loop.call_at(self._last_read + self._read_timeout, self._check_timer)
        if isinstance(request, bytes):
            self._transport.write(request)
        else:
            try:
                await self._write_parts(request)
            except BaseException:
                if self._head.done() and not self._head.cancelled():
                    self._head.exception()  # the same failure, raised here: retrieved
                raise
        await self._head

    async def _write_parts(self, parts: Sequence[bytes | memoryview]) -> None:
        for part in parts:
            view = memoryview(part)
            for start in range(0, len(view), WRITE_SLICE):
                if self._drained is not None:
                    await self._drained
                if self._failure is not None:
                    raise self._failure
                if self._transport is None or self.closed:
                    raise ConnectionBroken("the upstream closed the connection")
                self._transport.write(view[start : start + WRITE_SLICE])
                self._last_read = self._loop.time()  # writing is progress too

    async def next_body(self) -> bytes:
        """What arrived of the body since the last call; b"" once it is complete."""
        while not self._body:
            if self._failure is not None:
                raise self._failure
            if self._complete:
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body, self._buffered = [], 0
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return body

    @property
    def complete(self) -> bool:
        """The whole response was read and the connection can carry another."""
        return self._complete and not self._body and not self.closed

    def finish(self) -> None:
        """Ready for the next request (only once `complete`)."""
        self._busy = False
        self.fresh = False

    def close(self) -> None:
        self.closed = True
        self._stop_timer()
        if self._transport is not None:
            self._transport.close()

    # --- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._last_read = self._loop.time()
        self.bytes_received += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionBroken(f"malformed response from upstream: {exc}"))
            self.close()

    def pause_writing(self) -> None:
        self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.resume_writing()
        if self._busy and not self._complete:
            if self.status and self._reads_to_eof():
                self.on_message_complete()
            else:
                self._fail(ConnectionBroken("the upstream closed the connection"))
        self._stop_timer()

    # --- httptools callbacks --------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        encoding = self.headers.get("content-encoding", "identity").lower()
        if encoding in ("gzip", "deflate"):
            # We ask for no compression, but a server may still send it.
            self._inflate = zlib.decompressobj(47 if encoding == "gzip" else 15)
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self._inflate is not None:
            body = self._inflate.decompress(body)
            if not body:  # b"" means the end to a reader: wait for real data
                return
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._inflate is not None and (tail := self._inflate.flush()):
            self._body.append(tail)
        self._complete = True
        self._stop_timer()
        if not self._parser.should_keep_alive():
            self.close()
        self._wake()

    # --- internals ------------------------------------------------------------------

    def _reads_to_eof(self) -> bool:
        """A response with neither a length nor chunks ends when the connection does."""
        return "content-length" not in self.headers and "chunked" not in self.headers.get(
            "transfer-encoding", ""
        )

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, failure: HttpError) -> None:
        self._failure = failure
        if self._head is not None and not self._head.done():
            self._head.set_exception(failure)
        self._wake()

    def _check_timer(self) -> None:
        """Fires at most once per timeout period, however often data arrives."""
        idle = self._loop.time() - self._last_read
        if idle < self._read_timeout:
            self._timer = self._loop.call_later(self._read_timeout - idle, self._check_timer)
            return
        self._timer = None
        self._fail(ReadTimeout(f"no data from upstream for {self._read_timeout:g} s"))
        self.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
