"""A small HTTP/1.1 client for upstream calls (see `pool`)."""

from savegate.httpclient.connection import (
    ConnectFailed,
    ConnectionBroken,
    HttpError,
    ProxyError,
    ReadTimeout,
)
from savegate.httpclient.pool import ConnectionPool, ConnectTimeout, Response

__all__ = [
    "ConnectFailed",
    "ConnectTimeout",
    "ConnectionBroken",
    "ConnectionPool",
    "HttpError",
    "ProxyError",
    "ReadTimeout",
    "Response",
]
