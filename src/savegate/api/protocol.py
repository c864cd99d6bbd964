"""HTTP/1.1 for the gateway's ASGI app: httptools parses, and this module does only
what the gateway needs of the rest, in fewer steps than uvicorn's protocol takes.

What it does differently, and why:
- A response's writes are paired into one system call: a write waits until the next
  one, or the end of the current turn of the event loop, so the headers travel with
  the first body part and the last part with the chunk terminator (a JSON answer is one
  write, not two; a stream's single-read chunks one, not four).
- The keep-alive timer is armed once per idle period, not set and cancelled around
  every request.
- A request's body wakes its reader through a future made only when it must wait:
  a JSON body almost always arrives with its headers.
- A lost connection fires the `DisconnectSignal` each request finds in its scope, so
  the application learns of it without a task of its own waiting on `receive`.
- Response headers are checked for forbidden bytes in one search over all names and
  one over all values, not two per header.

Uvicorn's server around it stays: sockets, workers' shared listeners, signals,
lifespan, the date header, and the graceful shutdown that calls `shutdown()` on each
connection and waits for `server_state.tasks`.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections import deque
from typing import Any
from urllib.parse import unquote

import httptools
from uvicorn.config import Config
from uvicorn.protocols.utils import get_local_addr, get_remote_addr, is_ssl
from uvicorn.server import ServerState

from savegate.api.http import DISCONNECT_EXTENSION, DisconnectSignal, Message, Scope

log = logging.getLogger("uvicorn.error")

# Bytes a header name or value may not hold (RFC 9110's token and field-value rules),
# found by deleting them (`bytes.translate` costs a third of a regular expression's search).
_BAD_NAME = bytes(range(0x20)) + b'\x7f()<>@,;:[]={} \\"'
_BAD_VALUE = bytes(range(0x09)) + bytes(range(0x0A, 0x20)) + b"\x7f"

# Past this much unread request body, the connection stops reading until it is read.
_BODY_HIGH_WATER = 65536
_BODILESS_STATUS = (204, 304)
_ASGI = {"version": "3.0", "spec_version": "2.3"}


def _holds(data: bytes, forbidden: bytes) -> bool:
    """Whether `data` holds any of the `forbidden` bytes."""
    return len(data.translate(None, forbidden)) != len(data)


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


_STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}
_INVALID = b"Invalid HTTP request received."
_BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_INVALID), _INVALID)
)


class HttpProtocol(asyncio.Protocol):
    """One client connection; requests on it are served one at a time, in order."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self._app = config.loaded_app
        self._loop = _loop or asyncio.get_event_loop()
        self._state = server_state
        self._keep_alive_seconds = float(config.timeout_keep_alive)
        parser = httptools.HttpRequestParser(self)
        # A response may be sent before the rest of its request arrives (413).
        parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self._parser: httptools.HttpRequestParser | None = parser
        self._transport: asyncio.Transport | None = None
        self._server: tuple[str, int | None] | None = None
        self._client: tuple[str, int] | None = None
        self._scheme = "http"
        self._writes: list[bytes] = []
        self._drained: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._idle_since = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        # The request being parsed, the one being answered, and those parsed meanwhile.
        self._parsing: Exchange | None = None
        self._serving: Exchange | None = None
        self._queued: deque[Exchange] = deque()
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._expects_continue = False
        self._receiving = False  # a request's head has begun to arrive

    # --- the transport's side ---------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._state.connections.add(self)  # type: ignore[arg-type]
        self._transport = transport
        self._server = get_local_addr(transport)
        self._client = get_remote_addr(transport)
        self._scheme = "https" if is_ssl(transport) else "http"
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._state.connections.discard(self)
        self._writes.clear()
        for exchange in (self._serving, *self._queued):
            if exchange is not None and not exchange.complete:
                exchange.gone()
        self._queued.clear()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._wake_writers()
        # Let go of what refers back to this connection (the parser's callbacks, the
        # transport, the exchanges), so that reference counting frees it: a client that
        # opens a connection per request would leave a cycle per request otherwise.
        self._parser = self._transport = self._parsing = self._serving = None

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            return  # the connection is lost
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No protocol to upgrade to: the request is answered, then the connection
            # closes (what followed the upgrade request is not HTTP/1.1 to us).
            if self._parsing is not None:
                self._parsing.keep_alive = False
        except httptools.HttpParserError:
            log.warning("Invalid HTTP request received.")
            if self._serving is None or self._serving.complete:
                self.write(_BAD_REQUEST)
            self.close()

    def eof_received(self) -> None:
        pass

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        self._wake_writers()

    def _wake_writers(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    async def drain(self) -> None:
        if self._drained is not None:
            await self._drained

    # --- the parser's callbacks -------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._expects_continue = False
        self._receiving = True

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self._expects_continue = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._receiving = False
        parser = self._parser
        assert parser is not None  # it is feeding us
        version = parser.get_http_version()
        url = httptools.parse_url(self._url)
        raw_path = url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        scope: Scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": version,
            "server": self._server,
            "client": self._client,
            "scheme": self._scheme,
            "method": parser.get_method().decode("ascii"),
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": url.query or b"",
            "headers": self._headers,
            "extensions": {DISCONNECT_EXTENSION: {"signal": DisconnectSignal()}},
        }
        keep_alive = version != "1.0" and parser.should_keep_alive()
        exchange = Exchange(self, scope, keep_alive, self._expects_continue)
        self._parsing = exchange
        if self._serving is None:
            self._serve(exchange)
        else:  # pipelined behind the one being answered
            self._queued.append(exchange)
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        exchange = self._parsing
        if exchange is None or exchange.complete:
            return  # answered already: the rest of its body is read and let go
        exchange.body.append(body)
        exchange.buffered += len(body)
        if exchange.buffered > _BODY_HIGH_WATER:
            self._pause_reading()
        exchange.wake()

    def on_message_complete(self) -> None:
        exchange = self._parsing
        if exchange is None or exchange.complete:
            return
        exchange.more_body = False
        exchange.wake()

    # --- serving ----------------------------------------------------------------------

    def _serve(self, exchange: Exchange) -> None:
        self._serving = exchange
        task = self._loop.create_task(exchange.run(self._app))
        tasks = self._state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def answered(self, exchange: Exchange) -> None:
        """`exchange`'s response is complete: on to the next request, or wait for one."""
        self._state.total_requests += 1
        if not exchange.keep_alive:
            self.close()
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._serving = None
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        if self._queued:
            self._serve(self._queued.popleft())
        else:
            self._arm_idle()

    def _arm_idle(self) -> None:
        self._idle_since = self._loop.time()
        if self._idle_timer is None:
            deadline = self._idle_since + self._keep_alive_seconds
            self._idle_timer = self._loop.call_at(deadline, self._idle_check)

    def _idle_check(self) -> None:
        """Close a connection idle for the keep-alive time; one that served meanwhile
        has its timer set again from its last answer."""
        self._idle_timer = None
        if self._serving is not None:
            return  # set again when this request is answered
        if self._receiving:  # a request on its way: its head is slow, not idle
            self._arm_idle()
            return
        deadline = self._idle_since + self._keep_alive_seconds
        if self._loop.time() >= deadline:
            self.close()
        else:
            self._idle_timer = self._loop.call_at(deadline, self._idle_check)

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()

    def shutdown(self) -> None:
        """The server is shutting down: close now if idle, else once every request it
        has received is answered (probes pipelined behind a stream still are)."""
        if self._serving is None:
            self.close()
        else:
            (self._queued[-1] if self._queued else self._serving).keep_alive = False

    # --- writing ----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send `data` with the next write, or at the end of this turn of the loop."""
        if self._writes:
            self._writes.append(data)
            self._flush()
            return
        self._writes.append(data)
        self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        writes = self._writes
        if writes and self._transport is not None and not self._transport.is_closing():
            self._transport.write(writes[0] if len(writes) == 1 else b"".join(writes))
        writes.clear()

    def close(self) -> None:
        self._flush()  # what was written just before must still go out
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()


class Exchange:
    """One request and its response: the ASGI `receive` and `send` of one call."""

    __slots__ = (
        "_connection",
        "_waiter",
        "body",
        "buffered",
        "chunked",
        "complete",
        "disconnected",
        "expects_continue",
        "keep_alive",
        "left",
        "more_body",
        "read_all",
        "scope",
        "started",
    )

    def __init__(
        self, connection: HttpProtocol, scope: Scope, keep_alive: bool, expects_continue: bool
    ) -> None:
        self._connection = connection
        self.scope = scope
        self.keep_alive = keep_alive
        self.expects_continue = expects_continue
        self.body: list[bytes] = []
        self.buffered = 0
        self.more_body = True
        self.read_all = False  # the final part of the body was handed to the app
        self.disconnected = False
        self.started = False
        self.complete = False
        self.chunked = False
        self.left = 0  # bytes still owed of a response with a content-length
        self._waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def gone(self) -> None:
        self.disconnected = True
        self.wake()
        self.scope["extensions"][DISCONNECT_EXTENSION]["signal"].fire()

    async def run(self, app: Any) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            self._connection.close()
            raise
        except BaseException:
            log.exception("Exception in ASGI application")
            if not self.started:
                await self._send_500()
            else:
                self._connection.close()
        else:
            if not self.started and not self.disconnected:
                log.error("ASGI callable returned without starting response.")
                await self._send_500()
            elif not self.complete and not self.disconnected:
                log.error("ASGI callable returned without completing response.")
                self._connection.close()

    async def _send_500(self) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
        await self.send({"type": "http.response.start", "status": 500, "headers": headers})
        await self.send({"type": "http.response.body", "body": b"Internal Server Error"})

    async def receive(self) -> Message:
        connection = self._connection
        if self.expects_continue:
            self.expects_continue = False
            connection.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not (self.disconnected or self.complete):
            if self.body or (not self.more_body and not self.read_all):
                body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
                self.body = []
                self.buffered = 0
                self.read_all = not self.more_body
                connection.resume_reading()
                return {"type": "http.request", "body": body, "more_body": self.more_body}
            connection.resume_reading()
            self._waiter = connection._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        connection = self._connection
        if connection._drained is not None and not self.disconnected:
            await connection.drain()
        if self.disconnected:
            return
        if not self.started:
            if message["type"] != "http.response.start":
                raise RuntimeError(f"Expected 'http.response.start', got '{message['type']}'.")
            self.started = True
            self.expects_continue = False
            connection.write(self._head(message["status"], message.get("headers", ())))
            return
        if self.complete:
            raise RuntimeError(f"Unexpected '{message['type']}' after the response completed.")
        if message["type"] != "http.response.body":
            raise RuntimeError(f"Expected 'http.response.body', got '{message['type']}'.")
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if self.chunked:
            if body:
                connection.write(
                    b"%x\r\n%b\r\n%s" % (len(body), body, b"" if more else b"0\r\n\r\n")
                )
            elif not more:
                connection.write(b"0\r\n\r\n")
        elif self.scope["method"] != "HEAD":
            self.left -= len(body)
            if self.left < 0:
                raise RuntimeError("Response content longer than Content-Length")
            if body:
                connection.write(body)
        if not more:
            if self.left > 0 and self.scope["method"] != "HEAD":
                raise RuntimeError("Response content shorter than Content-Length")
            self.complete = True
            self.wake()
            connection.answered(self)

    def _head(self, status: int, headers: Any) -> bytes:
        """The status line and headers, framing decided (a length, or chunks)."""
        lines = [_STATUS_LINES[status]]
        framed = closes = False
        names: list[bytes] = []
        values: list[bytes] = []
        for name, value in (*self._connection._state.default_headers, *headers):
            names.append(name)
            values.append(value)
            name = name.lower()
            if name == b"content-length" and not framed:
                self.left = int(value)
                framed = True
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.chunked = framed = True
            elif name == b"connection" and b"close" in value.lower():
                self.keep_alive = False
                closes = True
            lines += (name, b": ", value, b"\r\n")
        if _holds(b"".join(names), _BAD_NAME) or _holds(b"".join(values), _BAD_VALUE):
            raise RuntimeError("Invalid HTTP header.")
        if not self.keep_alive and not closes:
            lines.append(b"connection: close\r\n")
        if not framed and self.scope["method"] != "HEAD" and status not in _BODILESS_STATUS:
            self.chunked = True
            lines.append(b"transfer-encoding: chunked\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)
