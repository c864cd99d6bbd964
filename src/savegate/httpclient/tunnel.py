"""Connections through a forward proxy: to the proxy itself (TLS too, for an `https://`
proxy), and HTTP CONNECT tunnels, with TLS to the upstream started inside the tunnel."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import TypeVar

from savegate.httpclient.connection import Connection, ProxyError
from savegate.httpclient.proxy import Proxy

P = TypeVar("P", bound=asyncio.Protocol)
MAX_REPLY = 64 * 1024  # a CONNECT reply's head is a few hundred bytes


async def connect_to_proxy(
    proxy: Proxy, context: ssl.SSLContext | None, factory: Callable[[], P]
) -> tuple[asyncio.Transport, P]:
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await loop.create_connection(
            factory,
            proxy.host,
            proxy.port,
            ssl=context if proxy.tls else None,
            server_hostname=proxy.host if proxy.tls else None,
        )
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ProxyError(f"its proxy cannot be reached ({reason.lower()})", proxy.label) from exc
    return transport, protocol


class _Reply(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT, up to the end of its head."""

    def __init__(self, proxy: Proxy) -> None:
        self._proxy = proxy
        self._data = b""
        self.head: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._data += data
        end = self._data.find(b"\r\n\r\n")
        if not self.head.done() and (end >= 0 or len(self._data) > MAX_REPLY):
            self.head.set_result(self._data[: max(end, 0)])

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_exception(
                ProxyError("its proxy closed the connection instead of a tunnel", self._proxy.label)
            )


def _status(head: bytes) -> tuple[int, str]:
    """(status, reason) of `HTTP/1.1 200 Connection established`; (0, …) if unreadable."""
    parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return 0, "no HTTP answer"
    return int(parts[1]), parts[2] if len(parts) > 2 else ""


async def open_tunnel(
    proxy: Proxy,
    proxy_context: ssl.SSLContext | None,
    host: str,
    port: int,
    context: ssl.SSLContext,
    connection: Connection,
) -> None:
    """A CONNECT tunnel to host:port, with TLS to the upstream over it, carried by
    `connection`. It stays open for as many requests as the upstream keeps it alive."""
    transport, reply = await connect_to_proxy(proxy, proxy_context, lambda: _Reply(proxy))
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"host: {authority}"]
    if proxy.authorization is not None:
        lines.append(f"proxy-authorization: {proxy.authorization}")
    try:
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        status, reason = _status(await reply.head)
        if not 200 <= status < 300:
            refused = "rejected the gateway's proxy credentials" if status in (401, 407) else ""
            what = f"{refused or 'refused the tunnel'} (HTTP {status} {reason}".strip() + ")"
            raise ProxyError(f"its proxy {what}", proxy.label, status)
        loop = asyncio.get_running_loop()
        tls = await loop.start_tls(transport, connection, context, server_hostname=host)
    except BaseException:
        transport.close()
        raise
    if tls is None:
        raise ProxyError("its proxy closed the tunnel", proxy.label)
    connection.connection_made(tls)  # start_tls hands the new transport over to nobody
