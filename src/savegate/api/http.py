"""Minimal ASGI plumbing: requests, JSON and SSE responses, and disconnect handling.

The API is plain ASGI rather than a framework so that the hot path does no work we
did not ask for, and so that a client's disconnect cancels the work it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Mapping,
    MutableMapping,
)
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson

from savegate.api.relay import Framer, relay
from savegate.core.errors import GatewayError, PayloadTooLarge, interruption
from savegate.core.keys import ApiKey
from savegate.core.media import MediaAnswer
from savegate.core.outcome import Outcome
from savegate.core.payload import Json
from savegate.core.request import RequestContext
from savegate.providers.base import ByteStream, ChatStream
from savegate.wire import sse
from savegate.wire.chunks import WholeStream
from savegate.wire.multipart import Form

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

KEEPALIVE_SECONDS = 15.0
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class HttpRequest:
    __slots__ = (
        "_context",
        "_headers",
        "body",
        "form",
        "method",
        "outcome",
        "path",
        "receive",
        "request_id",
        "scope",
        "started",
    )

    def __init__(self, scope: Scope, receive: Receive, request_id: str) -> None:
        self.scope = scope
        self.receive = receive
        self.request_id = request_id
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.started = time.perf_counter()
        self.outcome = Outcome(request_id, started=self.started)
        self._headers: dict[str, str] | None = None
        self._context: RequestContext | None = None
        self.body = b""
        self.form: Form | None = None  # a multipart upload to relay, once read

    def authenticated(self, key: ApiKey) -> RequestContext:
        # The headers' own lookup, not `self.header`: a bound method of the request held by
        # its context would make a cycle, left to the cyclic collector at every request.
        self._context = RequestContext(
            self.request_id, key, self.started, self.headers.get, outcome=self.outcome
        )
        return self._context

    @property
    def context_if_any(self) -> RequestContext | None:
        return self._context

    @property
    def context(self) -> RequestContext:
        """Who is asking; set once the request is authenticated."""
        if self._context is None:
            raise RuntimeError("the request is not authenticated")
        return self._context

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = {
                k.decode("latin-1"): v.decode("latin-1") for k, v in self.scope["headers"]
            }
        return self._headers

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    async def read_body(self, limit: int) -> None:
        declared = self.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise too_large(limit)
        parts: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            parts.append(chunk)
            if not message.get("more_body"):
                self.body = b"".join(parts)
                return


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"Request body too large: the limit is {limit} bytes.")


_BODILESS = frozenset({204, 304})


class ClientGone(Exception):
    """The client went away; there is nobody left to answer."""


@dataclass(slots=True)
class JsonResponse:
    body: bytes
    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    content_type: bytes = b"application/json"  # a whole body of another type: web pages


@dataclass(slots=True)
class StreamResponse:
    """An SSE body: a stream framed for the client's dialect. Headers go out at once;
    the chunks follow as they come."""

    stream: ChatStream
    framer: Framer
    request_id: str
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class BytesResponse:
    """A body of bytes sent as they are read (a stored file), with its length known."""

    chunks: AsyncGenerator[bytes, None]
    length: int
    content_type: bytes = b"application/octet-stream"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class RelayResponse:
    """An upstream body relayed as it arrives (audio, passed-through events), in chunks."""

    stream: ByteStream
    request_id: str
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


Response = JsonResponse | StreamResponse | BytesResponse | RelayResponse


def json_response(data: Any, status: int = 200) -> JsonResponse:
    return JsonResponse(orjson.dumps(data), status)


def encode_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def error_response(error: GatewayError) -> JsonResponse:
    return JsonResponse(orjson.dumps(error.body()), error.status, encode_headers(error.headers))


def answer_response(answer: Json, headers: Mapping[str, str]) -> JsonResponse:
    return JsonResponse(answer.raw, headers=encode_headers(headers))


def media_response(answer: MediaAnswer, headers: Mapping[str, str]) -> JsonResponse:
    """A whole upstream answer with its own content type (JSON, text, subtitles)."""
    return JsonResponse(
        answer.raw, headers=encode_headers(headers), content_type=answer.content_type.encode()
    )


def relay_response(
    stream: ByteStream, headers: Mapping[str, str], request_id: str
) -> RelayResponse:
    return RelayResponse(stream, request_id, encode_headers(headers))


def stream_response(
    stream: ChatStream, framer: Framer, headers: Mapping[str, str], request_id: str
) -> StreamResponse:
    return StreamResponse(stream, framer, request_id, encode_headers(headers))


DISCONNECT_EXTENSION = "savegate.disconnect"


class DisconnectSignal:
    """The server's word that a request's client went away, passed to one listener.

    Our server (`api/protocol.py`) puts one in each request's scope, under
    `extensions["savegate.disconnect"]["signal"]`: a callback costs nothing per request,
    where a task waiting on `receive` for `http.disconnect` costs two task steps.
    """

    __slots__ = ("_listener", "fired")

    def __init__(self) -> None:
        self._listener: Callable[[], None] | None = None
        self.fired = False

    def listen(self, listener: Callable[[], None] | None) -> None:
        self._listener = listener
        if listener is not None and self.fired:
            listener()

    def fire(self) -> None:
        self.fired = True
        listener, self._listener = self._listener, None
        if listener is not None:
            listener()


class DisconnectGuard:
    """Cancels the current task when the client disconnects before we are done.

    The disconnect comes from our server's signal or, under another ASGI server, from a
    task waiting for `http.disconnect`. Uvicorn also reports `http.disconnect` once the
    response is complete, so the guard is told when the final message is about to be
    sent and ignores what follows.
    """

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self._task = asyncio.current_task()
        self.finishing = False
        self.disconnected = False
        self._watcher: asyncio.Task[None] | None = None
        extension = (scope.get("extensions") or {}).get(DISCONNECT_EXTENSION) or {}
        self._signal: DisconnectSignal | None = extension.get("signal")
        if self._signal is not None:
            self._signal.listen(self._gone)
        else:
            self._watcher = asyncio.create_task(self._watch(receive))

    def _gone(self) -> None:
        if not self.finishing and self._task is not None:
            self.disconnected = True
            self._task.cancel()

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._gone()

    def close(self) -> None:
        if self._signal is not None:
            self._signal.listen(None)
        if self._watcher is not None:
            self._watcher.cancel()


async def send_response(
    send: Send, response: Response, base_headers: list[tuple[bytes, bytes]], guard: DisconnectGuard
) -> None:
    if isinstance(response, JsonResponse):
        headers = [(b"content-type", response.content_type), *base_headers, *response.headers]
        if response.status not in _BODILESS:
            # A length, not chunks: the whole body is at hand; clients need not unframe it.
            headers.append((b"content-length", b"%d" % len(response.body)))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        guard.finishing = True
        await send({"type": "http.response.body", "body": response.body})
        return
    if isinstance(response, BytesResponse):
        await _send_bytes(send, response, base_headers, guard)
        return
    if isinstance(response, RelayResponse):
        await _send_relay(send, response, base_headers, guard)
        return
    headers = [*_SSE_HEADERS, *base_headers, *response.headers]
    if isinstance(response.stream, WholeStream):
        await _send_whole(send, response, headers, guard)
        return
    try:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            await _send_stream(send, relay(response.stream, response.framer, response.request_id))
        except asyncio.CancelledError as exc:
            cut = interruption(exc)
            if cut is None:
                raise
            # Cut by the server (shutdown): the client must see that the answer is cut.
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            failure = response.framer.fail(cut)
            await send({"type": "http.response.body", "body": failure, "more_body": True})
    finally:
        # However the relay ended (done, failed, the client gone), the upstream is let go now.
        await response.stream.aclose()
    guard.finishing = True
    await send({"type": "http.response.body", "body": b""})


async def _send_whole(
    send: Send, response: StreamResponse, headers: list[tuple[bytes, bytes]], guard: DisconnectGuard
) -> None:
    """A stream whose chunks are all at hand goes out framed in one body, so in one
    socket write with its head: no per-chunk sends, no keep-alive timer."""
    framed = relay(response.stream, response.framer, response.request_id)
    body = b"".join([chunk async for chunk in framed])
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    guard.finishing = True
    await send({"type": "http.response.body", "body": body})


async def _send_bytes(
    send: Send,
    response: BytesResponse,
    base_headers: list[tuple[bytes, bytes]],
    guard: DisconnectGuard,
) -> None:
    headers = [
        (b"content-type", response.content_type),
        (b"content-length", b"%d" % response.length),
        *base_headers,
        *response.headers,
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    async with contextlib.aclosing(response.chunks) as chunks:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    guard.finishing = True
    await send({"type": "http.response.body", "body": b""})


async def _send_relay(
    send: Send,
    response: RelayResponse,
    base_headers: list[tuple[bytes, bytes]],
    guard: DisconnectGuard,
) -> None:
    """Each upstream read goes out as it came. A body that breaks mid-way is cut, the
    final chunk never sent, so the client cannot take it for complete; events end with
    OpenAI's in-stream error instead."""
    stream = response.stream
    events = stream.content_type.startswith("text/event-stream")
    headers = [
        (b"content-type", stream.content_type.encode("latin-1")),
        *base_headers,
        *response.headers,
    ]
    if events:
        headers += _SSE_HEADERS[1:]
    try:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            async for read in stream:
                await send({"type": "http.response.body", "body": read, "more_body": True})
        except (GatewayError, asyncio.CancelledError) as exc:
            error = exc if isinstance(exc, GatewayError) else interruption(exc)
            if error is None:
                raise
            if isinstance(exc, asyncio.CancelledError):
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
            log.warning("relay %s failed mid-way: %s", response.request_id, error.message)
            if not events:
                return
            await send(
                {"type": "http.response.body", "body": sse.error_event(error), "more_body": True}
            )
    finally:
        await stream.aclose()
    guard.finishing = True
    await send({"type": "http.response.body", "body": b""})


def query_params(request: HttpRequest) -> dict[str, str]:
    """The query string's parameters (the last value of each)."""
    raw = request.scope.get("query_string", b"").decode("latin-1")
    return {name: values[-1] for name, values in parse_qs(raw).items()}


async def _send_stream(send: Send, chunks: AsyncGenerator[bytes, None]) -> None:
    keep_alive = _KeepAlive(send)
    try:
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                keep_alive.sent()
    finally:
        keep_alive.stop()


class _KeepAlive:
    """Sends an SSE comment when a stream has been silent for `KEEPALIVE_SECONDS`, so
    proxies do not cut it. A timer, not a task, until a comment is due."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(
            KEEPALIVE_SECONDS, self._due
        )
        self._task: asyncio.Task[None] | None = None

    def sent(self) -> None:
        self._last = self._loop.time()

    def _due(self) -> None:
        silent = self._loop.time() - self._last
        if silent < KEEPALIVE_SECONDS:
            self._timer = self._loop.call_later(KEEPALIVE_SECONDS - silent, self._due)
        else:
            self._timer = None
            self._task = self._loop.create_task(self._ping())

    async def _ping(self) -> None:
        await self._send({"type": "http.response.body", "body": sse.KEEPALIVE, "more_body": True})
        self.sent()
        self._timer = self._loop.call_later(KEEPALIVE_SECONDS, self._due)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
