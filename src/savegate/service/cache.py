"""The exact response cache: which requests it serves, under what key, and single flight.

A request is looked up when the cache is on for its key (the key's own setting) or its
model (`cache.models`, public names after aliases), it asks for a repeatable answer
(`temperature: 0` or a `seed`, embeddings always; every request with `cache_all`), and
its headers allow it: `x-savegate-cache: no-store` or `Cache-Control: no-store` neither
reads nor writes, `refresh` or `no-cache` does not read but writes. The key is a hash of
the endpoint and the canonical request: the public model after aliases and every other
field but `user`, `stream` and `stream_options`, as JSON with sorted keys, its top-level
numbers written alike when they are equal (`temperature: 0` and `0.0` are one key).

Identical misses at once make one upstream call: the first leads, the others wait for its
answer and are served it from the cache, or make their own call if it failed. Within a
process through a future; across processes with Redis through a short lock key. A store
that cannot be reached bypasses the cache; it never fails a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from savegate.cache import CacheBackend, CacheUnavailable, Entry
from savegate.config import CacheConfig
from savegate.core.errors import InvalidRequest
from savegate.core.keys import ApiKey
from savegate.core.payload import Json
from savegate.core.request import ChatRequest, RequestContext
from savegate.metering.meter import Meter, RequestMeter
from savegate.providers.base import ChatStream
from savegate.service.cache_replay import CODECS, Assembler, Codec, Recording

log = logging.getLogger(__name__)

HEADER = "x-savegate-cache"
_IGNORED = ("user", "stream", "stream_options")
_POLL = 0.025  # seconds between looks while another process makes the call
_MEMO = 1024  # model names whose cache setting is remembered
_EXACT = 2**53  # floats past it stay floats: orjson writes no int beyond 64 bits


def directive(context: RequestContext) -> str | None:
    """`no-store`, `refresh` or None, from the request's headers."""
    asked = context.header(HEADER)
    if asked is not None:
        asked = asked.strip().lower()
        if asked not in ("no-store", "refresh"):
            raise InvalidRequest(
                f"Invalid {HEADER} header '{asked}': expected no-store or refresh.",
                code="invalid_cache_directive",
            )
        return asked
    control = context.header("cache-control")
    if control is None:
        return None
    tokens = {token.strip().lower() for token in control.split(",")}
    if "no-store" in tokens:
        return "no-store"
    return "refresh" if "no-cache" in tokens else None


def _number(value: float) -> float | int:
    return int(value) if value.is_integer() and -_EXACT <= value <= _EXACT else value


def canonical_fields(body: dict[str, Any], ignored: tuple[str, ...]) -> dict[str, Any]:
    """The request's fields but the `ignored`, an integral float made an int: JSON has one
    kind of number, and `top_p: 1` asks what `top_p: 1.0` does."""
    return {
        name: _number(value) if type(value) is float else value
        for name, value in body.items()
        if name not in ignored
    }


def repeatable(body: dict[str, Any], endpoint: str, cache_all: bool) -> bool:
    """Whether a request may be answered from a cache: it asks for a repeatable answer
    (embeddings always do), or the config caches all; never a Responses API request
    whose answer changes state upstream that a replay would leave as it is (a
    `conversation` it adds to) or comes later (`background`)."""
    if endpoint == "responses" and (body.get("conversation") is not None or body.get("background")):
        return False
    return (
        cache_all
        or endpoint == "embeddings"
        or body.get("temperature") == 0
        or body.get("seed") is not None
    )


class Patterns:
    """Model names (public, after aliases) matched against wildcard patterns (`*` = all),
    the answer remembered for the first names seen."""

    def __init__(self, patterns: list[str]) -> None:
        self._patterns = patterns
        self._everything = "*" in patterns
        self._seen: dict[str, bool] = {}

    def __contains__(self, model: str) -> bool:
        if self._everything or not self._patterns:
            return self._everything
        matches = self._seen.get(model)
        if matches is None:
            matches = any(fnmatch.fnmatchcase(model, p) for p in self._patterns)
            if len(self._seen) < _MEMO:
                self._seen[model] = matches
        return matches


Keep = Callable[[dict[str, Any] | None, RequestMeter, bytes | None], Awaitable[None]]


def recording(
    stream: ChatStream,
    codec: Codec,
    used: RequestMeter,
    keep: Keep,
    release: Callable[[], Awaitable[None]],
) -> ChatStream:
    """`stream`, folded as it passes: `keep` is told its answer when it ends whole, and
    `release` is called however it ends."""
    assert codec.assembler is not None

    async def done(assembler: Assembler | None) -> None:
        try:
            if assembler is not None:
                await keep(assembler.answer(used.usage), used, assembler.events)
        finally:
            await release()

    return Recording(stream, codec.assembler(), done)


class Look:
    """One request's dealings with the cache: a hit (`entry`), a miss whose answer is to
    be kept (`keep`, then `release` however the call ended), or a bypass."""

    def __init__(
        self,
        cache: ResponseCache | None,
        codec: Codec,
        digest: str = "",
        entry: Entry | None = None,
        *,
        leads: bool = False,
        claimed: bool = False,
    ) -> None:
        self._cache = cache
        self.codec = codec
        self._digest = digest
        self.entry = entry
        self._leads = leads
        self._claimed = claimed

    @property
    def headers(self) -> dict[str, str]:
        state = "hit" if self.entry is not None else "miss" if self._cache else "bypass"
        return {HEADER: state}

    async def keep(
        self, answer: dict[str, Any] | None, used: RequestMeter, events: bytes | None = None
    ) -> None:
        """Store the answer (and the stream's `events`, for a codec that replays them), if
        it is whole and the upstream said what it used."""
        record = used.answered
        if self._cache is None or answer is None or record is None or record.estimated:
            return
        if self.codec.kept(answer):
            provider, listed = record.provider, record.list_cost_usd
            await self._cache.put(self._digest, answer, provider, listed, events)

    def record(self, stream: ChatStream, used: RequestMeter) -> ChatStream:
        """The stream, its answer kept when it ends whole."""
        if self._cache is None or self.codec.assembler is None:
            return stream
        return recording(stream, self.codec, used, self.keep, self.release)

    def serve(self, request: ChatRequest, endpoint: str) -> Json:
        """A hit's whole answer (its usage row recorded)."""
        assert self._cache is not None and self.entry is not None
        self._cache.hit(request, endpoint, self.entry)
        return self.codec.whole(self.entry, request.context.request_id)

    def replay(self, request: ChatRequest, endpoint: str) -> ChatStream:
        """A hit as a stream (its usage row recorded)."""
        assert self._cache is not None and self.entry is not None
        self._cache.hit(request, endpoint, self.entry)
        return self.codec.stream(self.entry, request.include_usage, request.context.request_id)

    async def release(self) -> None:
        """Let those waiting for this call look again."""
        if self._cache is not None and self._leads:
            self._leads = False
            await self._cache.land(self._digest, self._claimed)


class ResponseCache:
    def __init__(
        self,
        config: CacheConfig,
        backend: CacheBackend,
        canonical: Callable[[str], str],
        meter: Meter,
        wait: float,
    ) -> None:
        """`canonical`: a model name after aliases; `wait`: how long a miss may wait for
        the same call made by another request."""
        self._config = config
        self._backend = backend
        self._canonical = canonical
        self._meter = meter
        self._wait = wait
        self._models = Patterns(config.models)
        self._flights: dict[str, asyncio.Future[None]] = {}

    def _enabled(self, key: ApiKey, model: str) -> bool:
        return key.cache if key.cache is not None else model in self._models

    def _digest(self, request: ChatRequest, model: str, endpoint: str) -> str:
        body = canonical_fields(request.body, _IGNORED)
        body["model"] = model
        scope: list[Any] = [endpoint, body]
        if self._config.per_key:
            scope.append(request.context.key.id)
        canonical = orjson.dumps(scope, option=orjson.OPT_SORT_KEYS)
        return hashlib.blake2b(canonical, digest_size=20).hexdigest()

    async def look(self, request: ChatRequest, endpoint: str) -> Look | None:
        """None when the cache is not on for this request's key, model or endpoint."""
        codec = CODECS.get(endpoint)
        if codec is None:
            return None
        model = self._canonical(request.model)
        if not self._enabled(request.context.key, model):
            return None
        asked = directive(request.context)
        if asked == "no-store" or not repeatable(request.body, endpoint, self._config.cache_all):
            return Look(None, codec)
        digest = self._digest(request, model, endpoint)
        try:
            if asked == "refresh":
                return Look(self, codec, digest)
            return await self._find(codec, digest)
        except CacheUnavailable:
            return Look(None, codec)

    async def _find(self, codec: Codec, digest: str) -> Look:
        entry = await self._backend.get(digest)
        if entry is not None:
            return Look(self, codec, digest, entry)
        flight = self._flights.get(digest)
        if flight is not None:  # the same call is being made here: wait for its answer
            try:
                async with asyncio.timeout(self._wait):
                    await asyncio.shield(flight)
            except TimeoutError:
                pass
            return Look(self, codec, digest, await self._backend.get(digest))
        self._flights[digest] = asyncio.get_running_loop().create_future()
        try:
            claimed = await self._claim(digest)
        except BaseException:
            await self.land(digest, claimed=False)
            raise
        if isinstance(claimed, Entry):
            await self.land(digest, claimed=False)
            return Look(self, codec, digest, claimed)
        return Look(self, codec, digest, leads=True, claimed=claimed)

    async def _claim(self, digest: str) -> bool | Entry:
        """Claim the call across processes (True), or the answer another process made
        meanwhile; False when the wait for it ran out."""
        deadline = time.monotonic() + self._wait
        while not await self._backend.claim(digest):
            await asyncio.sleep(_POLL)
            entry = await self._backend.get(digest)
            if entry is not None:
                return entry
            if time.monotonic() >= deadline:
                return False
        return True

    async def land(self, digest: str, claimed: bool) -> None:
        flight = self._flights.pop(digest, None)
        if flight is not None and not flight.done():
            flight.set_result(None)
        if claimed:
            await self._backend.release(digest)

    async def put(
        self,
        digest: str,
        answer: dict[str, Any],
        provider: str | None,
        list_cost: float,
        events: bytes | None,
    ) -> None:
        entry, raw = Entry.make(answer, provider, list_cost, events)
        if len(raw) > self._config.max_entry_bytes:
            return
        with contextlib.suppress(CacheUnavailable):  # kept next time, then
            await self._backend.put(digest, entry, raw)

    def hit(self, request: ChatRequest, endpoint: str, entry: Entry) -> None:
        """Record a hit's usage row: nothing paid, its list cost saved."""
        self._meter.hit(
            request, endpoint, entry.answer, entry.tokens, entry.provider, entry.list_cost_usd
        )

    async def aclose(self) -> None:
        await self._backend.aclose()
