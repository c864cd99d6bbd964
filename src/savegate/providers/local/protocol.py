"""The model process's wire: JSON messages over a Unix socket, each framed by its length.

One connection carries one call. The gateway sends the call; the model process answers
with one message (`answer` or `error`), or for a stream `ready`, then `chunks` as they are
generated, then `end` (or an `error`). A `cancel` from the gateway, or its side closing,
stops the call's work. A `status` call is answered at once and then held open: when it
closes, the model process is gone.

Messages (all JSON objects):
  gateway → model   {"op": "chat", "key": KEY, "body": BODY, "stream": BOOL}
                    {"op": "embed", "key": KEY, "body": BODY}
                    {"op": "status"}
                    {"op": "cancel"}
  model → gateway   {"answer": OBJECT}   {"ready": true}   {"chunks": [CHUNK, ...]}
                    {"end": true}        {"error": ERROR}
                    {"pid": PID, "model": NAME, "tokens_generated": N, "peers": [PID, ...]}
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from pathlib import Path
from typing import Any

import orjson

from savegate.core.errors import ContextLengthExceeded, GatewayError, InvalidRequest, ProviderError

_HEADER = struct.Struct(">I")
# Gateway requests are at most `server.max_body_bytes` (32 MiB by default); embeddings
# of a large batch come back bigger.
_LIMIT = 1 << 30

Message = dict[str, Any]

_MAX_PATH = 100  # sun_path holds 108 bytes
_directories: dict[Path, int] = {}


def address(path: Path) -> str:
    """`path` as a Unix socket address. A path too long for one goes through a descriptor
    of its directory, held open for the life of the process."""
    if len(str(path).encode()) < _MAX_PATH:
        return str(path)
    if path.parent not in _directories:
        _directories[path.parent] = os.open(path.parent, os.O_PATH)
    return f"/proc/self/fd/{_directories[path.parent]}/{path.name}"


class Connection:
    """One end of a call: framed messages in and out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, path: Path) -> Connection:
        """Raises `OSError` when nothing listens at `path`."""
        reader, writer = await asyncio.open_unix_connection(address(path))
        return cls(reader, writer)

    @property
    def peer_pid(self) -> int:
        """The process at the other end (SO_PEERCRED)."""
        sock = self._writer.get_extra_info("socket")
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", creds)[0])

    async def send(self, message: Message) -> None:
        payload = orjson.dumps(message)
        self._writer.write(_HEADER.pack(len(payload)) + payload)
        await self._writer.drain()

    async def receive(self) -> Message | None:
        """The next message; None once the other side is gone."""
        try:
            (size,) = _HEADER.unpack(await self._reader.readexactly(_HEADER.size))
            if size > _LIMIT:
                raise ValueError(f"a {size}-byte message from the model socket")
            message = orjson.loads(await self._reader.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        if not isinstance(message, dict):
            raise ValueError("a model socket message is not a JSON object")
        return message

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is already closed
            self._writer.close()


_ERRORS: dict[str, type[GatewayError]] = {
    cls.__name__: cls for cls in (GatewayError, InvalidRequest, ContextLengthExceeded)
}


def error_message(exc: GatewayError) -> Message:
    fields: Message = {
        "kind": type(exc).__name__,
        "message": exc.message,
        "status": exc.status,
        "type": exc.type,
        "code": exc.code,
        "param": exc.param,
    }
    if isinstance(exc, ProviderError):
        fields |= {"kind": "ProviderError", "retryable": exc.retryable}
    return {"error": fields}


def error_from(fields: Message) -> GatewayError:
    """The gateway error a model process's `error` message stands for."""
    message, status = str(fields["message"]), fields.get("status")
    type_, code, param = fields.get("type"), fields.get("code"), fields.get("param")
    if fields.get("kind") == "ProviderError":
        retryable = bool(fields.get("retryable"))
        return ProviderError(
            message, status=status, type=type_, code=code, param=param, retryable=retryable
        )
    cls = _ERRORS.get(str(fields.get("kind")), GatewayError)
    return cls(message, status=status, type=type_, code=code, param=param)
