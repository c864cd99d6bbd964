"""Keep-alive connections to one upstream origin, and the responses read through them.

Why not aiohttp or httpx: per request, their generality (cookies, redirects, proxies,
tracing, multidicts, URL objects) cost more CPU than the rest of the gateway's request
path put together, and added about 0.15 ms to every upstream call at concurrency 1
(bench/RESULTS.md). An upstream call here needs none of it: one origin, POST, a body
that is already bytes, a response read as it arrives. Through a forward proxy (`proxy`),
https upstreams are reached through a CONNECT tunnel per connection, kept alive like any
other; plain http ones by absolute-form requests to the proxy.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections import deque
from collections.abc import Mapping, Sequence
from urllib.parse import quote, urlsplit

from savegate.httpclient.connection import ConnectFailed, Connection, ConnectionBroken, ProxyError
from savegate.httpclient.proxy import Proxy
from savegate.httpclient.tunnel import connect_to_proxy, open_tunnel

KEEPALIVE_SECONDS = 15.0  # an idle connection older than this is closed, not reused
_SAFE_TARGET = re.compile(r"[A-Za-z0-9/:?=&%@+,;!$'()*~._-]*")


class ConnectTimeout(ConnectFailed, TimeoutError):
    pass


class Response:
    """Status and headers, with the body still to read. `release()` when done: a body
    read to the end gives the connection back for reuse, anything else closes it."""

    __slots__ = ("_connection", "_pool", "headers", "status")

    def __init__(self, pool: ConnectionPool, connection: Connection) -> None:
        self._pool = pool
        self._connection: Connection | None = connection
        self.status = connection.status
        self.headers = connection.headers

    async def next_body(self) -> bytes:
        """The next part of the body (what arrived since the last call); b"" at the end."""
        if self._connection is None:
            return b""
        return await self._connection.next_body()

    async def read(self) -> bytes:
        parts = []
        while part := await self.next_body():
            parts.append(part)
        return b"".join(parts)

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.release(connection)

    def close(self) -> None:
        """Stop reading: the connection is closed, so the upstream stops sending."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
            self._pool.release(connection)


class ConnectionPool:
    def __init__(
        self,
        base_url: str,
        *,
        limit: int,
        connect_timeout: float,
        read_timeout: float,
        proxy: Proxy | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        """`context` verifies the upstream's certificate (and an https proxy's); by
        default against the system's trusted authorities."""
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        tls = url.scheme == "https" or (proxy is not None and proxy.tls)
        self._context = (context or ssl.create_default_context()) if tls else None
        self._ssl = self._context if url.scheme == "https" else None
        self._host_header = url.netloc.rpartition("@")[2]
        self._prefix = url.path.rstrip("/")
        self._proxy = proxy
        # Plain http through a proxy: absolute-form requests, credentials on each.
        self._forwarded = proxy is not None and self._ssl is None
        self._proxy_lines: list[str] = []
        if self._forwarded:
            self._prefix = f"http://{self._host_header}{self._prefix}"
            if proxy is not None and proxy.authorization is not None:
                self._proxy_lines.append(f"proxy-authorization: {proxy.authorization}")
        self._limit = limit
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle: deque[tuple[float, Connection]] = deque()
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def post(
        self,
        target: str,
        headers: Mapping[str, str],
        body: bytes | Sequence[bytes | memoryview],
        method: str = "POST",
    ) -> Response:
        """Send `body` to the base URL's path + `target` and wait for the response head.
        A body in parts (an upload) is written part by part, never joined.

        A connection the upstream closed while it sat idle is noticed on use; the
        request is then sent once more on a new connection (the upstream never saw it)."""
        message: bytes | list[bytes | memoryview]
        if isinstance(body, bytes):
            message = self._head(target, headers, len(body), method) + body
        else:
            length = sum(len(part) for part in body)
            message = [self._head(target, headers, length, method), *body]
        retried = False
        while True:
            connection = await self._acquire()
            reused, seen = not connection.fresh, connection.bytes_received
            try:
                await connection.send(message)
            except ConnectionBroken:
                connection.close()
                self.release(connection)
                if reused and not retried and connection.bytes_received == seen:
                    retried = True
                    continue
                raise
            except BaseException:
                connection.close()  # cancelled or failed mid-exchange: unusable
                self.release(connection)
                raise
            if self._forwarded and connection.status == 407 and self._proxy is not None:
                connection.close()
                self.release(connection)
                what = "its proxy rejected the gateway's proxy credentials (HTTP 407)"
                raise ProxyError(what, self._proxy.label, 407)
            return Response(self, connection)

    def release(self, connection: Connection) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if connection.complete and not self._closed:
            connection.finish()
            self._idle.append((now, connection))
        else:
            connection.close()
            self._open -= 1
        while self._idle and now - self._idle[0][0] > KEEPALIVE_SECONDS:
            self._idle.popleft()[1].close()
            self._open -= 1
        self._wake_next()

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop()[1].close()
            self._open -= 1

    def _head(self, target: str, headers: Mapping[str, str], length: int, method: str) -> bytes:
        if not _SAFE_TARGET.fullmatch(target):
            target = quote(target, safe="/:?=&%@+,;!$'()*~")
        lines = [
            f"{method} {self._prefix}{target} HTTP/1.1",
            f"host: {self._host_header}",
            f"content-length: {length}",
            *self._proxy_lines,
        ]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"a line break in the upstream header {name!r}")
            lines.append(f"{name}: {value}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("latin-1")

    async def _acquire(self) -> Connection:
        while True:
            while self._idle:
                _, connection = self._idle.pop()  # the most recently used: least likely stale
                if not connection.closed:
                    return connection
                self._open -= 1
            if self._open < self._limit:
                break
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_next()  # the turn we were given goes to the next in line
                raise
        self._open += 1
        try:
            return await self._connect()
        except BaseException:
            self._open -= 1
            self._wake_next()
            raise

    def _wake_next(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        connection = Connection(loop, self._read_timeout)
        proxy = self._proxy
        try:
            async with asyncio.timeout(self._connect_timeout):
                if proxy is None:
                    await loop.create_connection(
                        lambda: connection,
                        self._host,
                        self._port,
                        ssl=self._ssl,
                        server_hostname=self._host if self._ssl else None,
                    )
                elif self._ssl is None:
                    await connect_to_proxy(proxy, self._context, lambda: connection)
                else:
                    await open_tunnel(
                        proxy, self._context, self._host, self._port, self._ssl, connection
                    )
        except TimeoutError as exc:
            via = f" through the proxy {proxy.label}" if proxy else ""
            raise ConnectTimeout(f"connecting to {self._host}:{self._port}{via} timed out") from exc
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {self._host}:{self._port}: {exc}") from exc
        return connection
