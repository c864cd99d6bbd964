"""A raw asyncio HTTP/1.1 client that timestamps the first body byte.

Used for stream TTFB (sequential requests on one keep-alive connection), for holding many
idle streams open, and for the 2,000-concurrent-streams test.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import httptools

T = TypeVar("T")


@dataclass(frozen=True)
class Route:
    """Where and how one kind of request goes to one target."""

    port: int
    path: str
    headers: dict[str, str]
    body: bytes

    def raw(self) -> bytes:
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: 127.0.0.1:{self.port}",
            "Content-Type: application/json",
            f"Content-Length: {len(self.body)}",
        ]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


class _Response:
    def __init__(self) -> None:
        self.parser: httptools.HttpResponseParser | None = None
        self.keep_alive = False
        self.first_body: float | None = None
        self.complete = asyncio.get_running_loop().create_future()
        self.nbytes = 0
        self.tail = b""
        self.events = 0

    def on_body(self, data: bytes) -> None:
        if self.first_body is None:
            self.first_body = time.perf_counter()
        self.nbytes += len(data)
        self.events += data.count(b"data:")
        self.tail = (self.tail + data)[-256:]

    def on_message_complete(self) -> None:
        # httptools answers this only while the message is current: afterwards, never.
        if self.parser is not None:
            self.keep_alive = self.parser.should_keep_alive()
        if not self.complete.done():
            self.complete.set_result(None)


@dataclass
class Result:
    status: int
    start: float
    first_body: float | None
    end: float | None
    nbytes: int
    events: int
    tail: bytes
    error: str | None = None

    @property
    def ttfb(self) -> float | None:
        return None if self.first_body is None else self.first_body - self.start


class Connection:
    """One keep-alive connection; `request` sends a route's request and reads the answer."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.raw = route.raw()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", self.route.port, limit=1 << 20
        )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None

    async def send(self) -> tuple[_Response, httptools.HttpResponseParser, float]:
        if self.writer is None:
            await self.open()
        assert self.writer is not None
        response = _Response()
        parser = httptools.HttpResponseParser(response)
        response.parser = parser
        start = time.perf_counter()
        self.writer.write(self.raw)
        return response, parser, start

    async def pump(
        self, response: _Response, parser: httptools.HttpResponseParser, until_first: bool = False
    ) -> None:
        assert self.reader is not None
        while not response.complete.done():
            if until_first and response.first_body is not None:
                return
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("connection closed before the end of the answer")
            parser.feed_data(data)

    async def request(self, limit_s: float = 60.0) -> Result:
        start = time.perf_counter()
        try:
            response, parser, start = await self.send()
            await asyncio.wait_for(self.pump(response, parser), limit_s)
        except (OSError, ConnectionError, TimeoutError, httptools.HttpParserError) as exc:
            self.close()
            return Result(0, start, None, None, 0, 0, b"", f"{type(exc).__name__}: {exc}")
        status = parser.get_status_code()
        if not response.keep_alive:
            self.close()
        return Result(
            status,
            start,
            response.first_body,
            time.perf_counter(),
            response.nbytes,
            response.events,
            response.tail,
        )


def check(result: Result, stream: bool) -> str | None:
    """Why an answer is not a correct one, or None."""
    if result.error:
        return result.error
    if result.status != 200:
        return f"status {result.status}: {result.tail[-200:]!r}"
    if stream and b"[DONE]" not in result.tail:
        return f"stream without [DONE] ({result.events} events)"
    if not stream and b"completion" not in result.tail and result.nbytes < 200:
        return f"short answer: {result.tail!r}"
    return None


async def sequential(route: Route, count: int) -> list[Result]:
    """`count` requests one after another on one keep-alive connection."""
    conn = Connection(route)
    try:
        return [await conn.request() for _ in range(count)]
    finally:
        conn.close()


async def interleaved(routes: dict[str, Route], count: int, gap: float) -> dict[str, list[Result]]:
    """The cold path: one request to each target in turn, each after `gap` seconds of
    idleness and the other targets' turns, as sparse real traffic arrives. Each target
    keeps its keep-alive connection, as a client would."""
    conns = {name: Connection(route) for name, route in routes.items()}
    results: dict[str, list[Result]] = {name: [] for name in routes}
    try:
        for conn in conns.values():  # connected and warm before the first measured turn
            await conn.request()
        for _ in range(count):
            for name, conn in conns.items():
                await asyncio.sleep(gap)
                results[name].append(await conn.request())
    finally:
        for conn in conns.values():
            conn.close()
    return results


async def _ramped(
    coros: list[Coroutine[Any, Any, T]], per_step: int = 100, step: float = 0.02
) -> list[T]:
    """Start the coroutines `per_step` at a time (a connect ramp), then wait for all."""
    tasks: list[asyncio.Task[T]] = []
    for i in range(0, len(coros), per_step):
        tasks += [asyncio.create_task(c) for c in coros[i : i + per_step]]
        await asyncio.sleep(step)
    return list(await asyncio.gather(*tasks))


async def hold_idle(
    route: Route, count: int, measure: Callable[[], int], settle: float = 2.0, limit_s: float = 60.0
) -> dict[str, Any]:
    """Open `count` streams that the upstream keeps silent after their first event, and
    measure the target's memory before and while they are open."""
    conns = [Connection(route) for _ in range(count)]

    async def one(conn: Connection) -> str | None:
        try:
            response, parser, _ = await conn.send()
            await asyncio.wait_for(conn.pump(response, parser, until_first=True), limit_s)
        except (OSError, ConnectionError, TimeoutError, httptools.HttpParserError) as exc:
            return f"{type(exc).__name__}: {exc}"
        status = parser.get_status_code()
        return None if status == 200 else f"status {status}"

    await asyncio.sleep(settle)
    before = measure()
    started = time.perf_counter()
    errors = await _ramped([one(c) for c in conns])
    open_seconds = time.perf_counter() - started
    await asyncio.sleep(settle)
    during = measure()
    for conn in conns:
        conn.close()
    failed = [e for e in errors if e]
    opened = count - len(failed)
    return {
        "streams": count,
        "opened": opened,
        "errors": len(failed),
        "error_kinds": dict(Counter(e[:80] for e in failed)),
        "rss_before": before,
        "rss_open": during,
        "open_seconds": round(open_seconds, 2),
        "bytes_per_stream": (during - before) / opened if opened else None,
    }


async def burst(route: Route, count: int, limit_s: float = 90.0) -> dict[str, Any]:
    """`count` streams at once, each read to its end; errors by kind."""

    async def one() -> str | None:
        conn = Connection(route)
        try:
            return check(await conn.request(limit_s), stream=True)
        finally:
            conn.close()

    started = time.perf_counter()
    errors = await _ramped([one() for _ in range(count)])
    failed = [e for e in errors if e]
    return {
        "streams": count,
        "ok": count - len(failed),
        "errors": len(failed),
        "error_kinds": dict(Counter(e[:80] for e in failed)),
        "seconds": round(time.perf_counter() - started, 2),
    }


async def upstream_stats(port: int) -> dict[str, int]:
    """The slow upstream's held-stream counts (`GET /stats`; resets its peak)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    response = _Response()
    body = bytearray()
    response.on_body = body.extend  # type: ignore[method-assign]
    parser = httptools.HttpResponseParser(response)
    writer.write(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    try:
        while not response.complete.done():
            data = await asyncio.wait_for(reader.read(65536), 10)
            if not data:
                break
            parser.feed_data(data)
    finally:
        writer.transport.abort()
    return dict(json.loads(bytes(body)))
