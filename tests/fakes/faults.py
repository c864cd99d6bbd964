"""Fault injection for the fake OpenAI upstream. The model name picks the fault:

- `flaky-<tag>-<n>`: the first n requests for this tag fail with 500, later ones answer;
- `rpm-<n>`: each upstream key (Authorization header) may make n requests a minute;
  past that, 429 with `retry-after: 30`; every answer carries `x-ratelimit-*` headers;
- `reset`: the connection is cut before any response;
- `hang`: no answer for 60 s;
- `slow-first-<ms>`: the answer starts after that many milliseconds;
- `<recording>@<framing>`: the recording streamed in another framing (see `reframe`);
- `echo-<status>`, `echo-text-500`, `echo-after-<n>`, `echo-ok`: a proxy that echoes the
  credentials it received everywhere it can (see `echo`).

Anything else falls through (None) to the ordinary replay.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections import defaultdict
from typing import Any

COUNTS: dict[str, int] = defaultdict(int)
WINDOWS: dict[str, list[float]] = defaultdict(list)


def _error(status: int, message: str) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "fake_error", "param": None, "code": f"fake_{status}"}
    }


async def inject(model: str, authorization: str | None) -> tuple[int, dict, list] | None:
    """(status, body, headers) of a failure to send, or None to answer normally.
    Raises to cut the connection."""
    if model.startswith("flaky-"):
        tag, _, count = model.removeprefix("flaky-").rpartition("-")
        COUNTS[tag] += 1
        if COUNTS[tag] <= int(count):
            return 500, _error(500, "fake flaky failure"), []
        return None
    if model.startswith("rpm-"):
        limit = int(model.removeprefix("rpm-"))
        now = time.monotonic()
        window = [t for t in WINDOWS[authorization or ""] if now - t < 60]
        if len(window) >= limit:
            WINDOWS[authorization or ""] = window
            return (
                429,
                _error(429, "fake rate limit"),
                [
                    (b"retry-after", b"30"),
                    (b"x-ratelimit-remaining-requests", b"0"),
                    (b"x-ratelimit-reset-requests", b"30s"),
                ],
            )
        window.append(now)
        WINDOWS[authorization or ""] = window
        return None
    if model == "reset":
        raise ConnectionResetError("cut before the response, on purpose")
    if model == "hang":
        await asyncio.sleep(60)
    if model.startswith("slow-first-"):
        await asyncio.sleep(int(model.removeprefix("slow-first-")) / 1000)
    return None


def echoed_error(headers: dict[str, str]) -> dict[str, Any]:
    """An error object that repeats the request's credentials in every field."""
    authorization = headers.get("authorization") or ""
    key = authorization.removeprefix("Bearer ")
    return {
        "error": {
            "message": f"proxy refused the request; it had these headers: {json.dumps(headers)}",
            "type": f"auth_error for {authorization}",
            "param": authorization,
            "code": key,
        },
        "request_headers": headers,
    }


def echo(model: str, headers: dict[str, str]) -> tuple[int, bytes, list] | None:
    """(status, body, headers) of an echoing proxy's answer: `echo-<status>` a JSON error,
    `echo-text-500` a text/plain one; the credentials also come back as response headers.
    None for other models (`echo-after-<n>` and `echo-ok` echo inside answers)."""
    authorization = (headers.get("authorization") or "").encode()
    echoed = [(b"x-echo-authorization", authorization), (b"www-authenticate", authorization)]
    if model == "echo-text-500":
        text = b"Bad gateway. Request headers: authorization: " + authorization
        return 500, text, [(b"content-type", b"text/plain"), *echoed]
    status = model.removeprefix("echo-")
    if not status.isdigit():
        return None
    body = json.dumps(echoed_error(headers)).encode()
    return int(status), body, [(b"content-type", b"application/json"), *echoed]


def echo_events(events: list[bytes], authorization: str) -> list[bytes]:
    """`echo-ok`: a normal answer whose text repeats the credentials."""
    marker = b'"delta":{"content":"'
    first = next(i for i, event in enumerate(events) if marker + b"I" in event)
    events = list(events)
    events[first] = events[first].replace(marker, marker + authorization.encode() + b" ", 1)
    return events


def rate_headers(model: str, authorization: str | None) -> list[tuple[bytes, bytes]]:
    if not model.startswith("rpm-"):
        return []
    limit = int(model.removeprefix("rpm-"))
    used = len(WINDOWS[authorization or ""])
    return [
        (b"x-ratelimit-limit-requests", str(limit).encode()),
        (b"x-ratelimit-remaining-requests", str(max(0, limit - used)).encode()),
        (b"x-ratelimit-reset-requests", b"60s"),
    ]


def reframe(model: str, events: list[bytes]) -> list[bytes]:
    """What the fake sends, write by write, for a `@<framing>` model:

    - `whole`: the stream in one write;
    - `split-<n>`: writes of n bytes, cutting events and lines anywhere;
    - `crlf`: CRLF line ends and a comment, as SSE allows;
    - `gzip`: gzip-compressed (with `content-encoding: gzip`), flushed write by write.
    """
    framing = model.partition("@")[2]
    body = b"".join(events)
    if framing == "whole":
        return [body]
    if framing.startswith("split-"):
        size = int(framing.removeprefix("split-"))
        return [body[i : i + size] for i in range(0, len(body), size)]
    if framing == "gzip":
        packer = zlib.compressobj(wbits=31)
        writes = [packer.compress(event) + packer.flush(zlib.Z_SYNC_FLUSH) for event in events]
        return [*writes, packer.flush()]
    if framing == "crlf":
        return [b": comment\r\n\r\n", *(event.replace(b"\n", b"\r\n") for event in events)]
    return events


def replay_name(model: str) -> str:
    """Which recording answers once the fault (if any) has passed."""
    model = model.partition("@")[0]
    if model.startswith(("flaky-", "rpm-", "slow-first-")) or model in ("reset", "hang"):
        return "text-basic"
    return model
