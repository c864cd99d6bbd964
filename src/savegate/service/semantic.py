"""The semantic cache: a chat request answered with the stored answer of the most similar
earlier one of the same scope, when the cosine similarity of their embeddings reaches the
threshold. What is compared, and what makes the scope, is `semantic_text`'s business.

It is on for the model groups `cache.semantic.groups` names (public names after
aliases), unless the key's cache setting is off; it follows the exact cache's rules for
which requests may be answered from a cache (`repeatable`) and for the request's
directives (`no-store`, `refresh`). The exact cache is asked first; the semantic cache
only on its miss or bypass, and a miss is kept by both. Near-identical misses at once in
one process make one upstream call, the others served its answer (`semantic_flights`).

The embeddings come from `embedding_model`, routed by the gateway's own router and
executor like any call (the embedded model by default). They are not billed to the
client's key: each call is a usage row of its own under the internal key id
`savegate-semantic-cache`, priced as any, so the operator sees what they cost. A call that
fails, or a text longer than `max_chars`, bypasses the semantic cache; never the request.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from savegate.cache import Entry
from savegate.cache.semantic import SemanticStore
from savegate.cache.vectors import Found, Vector, text_key
from savegate.config import CacheConfig
from savegate.core.errors import GatewayError
from savegate.core.keys import ApiKey
from savegate.core.payload import Json
from savegate.core.request import ChatRequest, RequestContext
from savegate.metering.meter import Meter, RequestMeter
from savegate.providers.base import ChatStream
from savegate.routing.executor import Executor
from savegate.service.cache import (
    HEADER,
    Look,
    Patterns,
    directive,
    recording,
    repeatable,
)
from savegate.service.cache_replay import CODECS, Codec
from savegate.service.embeddings import EMBEDDINGS, embed_route
from savegate.service.semantic_centre import VERSION, Centre, Vectors
from savegate.service.semantic_flights import Flight, Flights
from savegate.service.semantic_text import Subject, subject

log = logging.getLogger(__name__)

KIND = "x-savegate-cache-kind"
SIMILARITY = "x-savegate-cache-similarity"
# The embedding calls' usage rows are this key's, not the client's.
INTERNAL_KEY = ApiKey(
    id="savegate-semantic-cache",
    name="semantic cache embeddings",
    hint="",
    is_admin=False,
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
)
_WARN_EVERY = 10.0


class SemanticLook:
    """One request's dealings with both caches once the exact one had no answer: a
    semantic hit (`entry`), a miss kept by whichever cache writes, or a bypass."""

    def __init__(
        self,
        cache: SemanticCache | None,
        exact: Look | None,
        codec: Codec,
        subject: Subject | None = None,
        vector: Vector | None = None,
        found: Found | None = None,
        *,
        flight: Flight | None = None,
    ) -> None:
        """`flight`: this miss's call, which others may be waiting for."""
        self._cache = cache
        self._exact = exact
        self.codec = codec
        self._subject = subject
        self._vector = vector
        self._found = found
        self._flight = flight

    @property
    def entry(self) -> Entry | None:
        return self._found.entry if self._found is not None else None

    @property
    def headers(self) -> dict[str, str]:
        if self._found is not None:
            similarity = f"{self._found.similarity:.4f}"
            return {HEADER: "hit", KIND: "semantic", SIMILARITY: similarity}
        exact_writes = self._exact is not None and self._exact.headers[HEADER] == "miss"
        return {HEADER: "miss" if self._cache is not None or exact_writes else "bypass"}

    async def keep(
        self, answer: dict[str, Any] | None, used: RequestMeter, events: bytes | None = None
    ) -> None:
        if self._exact is not None:
            await self._exact.keep(answer, used, events)
        record = used.answered
        if self._cache is None or answer is None or record is None or record.estimated:
            return
        assert self._subject is not None and self._vector is not None
        entry = self._cache.put(
            self._subject, self._vector, answer, record.provider, record.list_cost_usd
        )
        if self._flight is not None:
            self._flight.land(entry)

    def record(self, stream: ChatStream, used: RequestMeter) -> ChatStream:
        """The stream, its answer kept by both caches when it ends whole."""
        if self._cache is None or self.codec.assembler is None:
            return self._exact.record(stream, used) if self._exact is not None else stream
        return recording(stream, self.codec, used, self.keep, self.release)

    def serve(self, request: ChatRequest, endpoint: str) -> Json:
        entry = self._hit(request, endpoint)
        return self.codec.whole(entry, request.context.request_id)

    def replay(self, request: ChatRequest, endpoint: str) -> ChatStream:
        entry = self._hit(request, endpoint)
        return self.codec.stream(entry, request.include_usage, request.context.request_id)

    def _hit(self, request: ChatRequest, endpoint: str) -> Entry:
        assert self._cache is not None and self._found is not None
        self._cache.hit(request, endpoint, self._found.entry)
        return self._found.entry

    async def release(self) -> None:
        if self._flight is not None:
            self._flight.land(None)  # no answer kept: those waiting make their own calls
        if self._exact is not None:
            await self._exact.release()


class SemanticCache:
    def __init__(
        self,
        config: CacheConfig,
        store: SemanticStore,
        executor: Executor,
        meter: Meter,
        embedding_model: str,
        *,
        centre: bool,
        wait: float,
    ) -> None:
        """`wait`: how long a miss may wait for a near-identical call made at once."""
        self._config = config
        self._semantic = config.semantic
        self._groups = Patterns(config.semantic.groups)
        self._store = store
        self._executor = executor
        self._meter = meter
        self._model = embedding_model
        # The embedded model's vectors are centred (see `semantic_centre`); others' not.
        self._centre = Centre(self._vectors_for_reference) if centre else None
        self._inflight = 0
        self._flights = Flights()
        self._wait = wait
        self._warned = 0.0

    def start(self) -> None:
        self._executor.plan(self._model, EMBEDDINGS)  # raises if no deployment embeds
        self._store.start()

    async def look(
        self, request: ChatRequest, endpoint: str, model: str, exact: Look | None
    ) -> SemanticLook | None:
        """None when the semantic cache is not on for this request (`model`: its public
        model after aliases)."""
        codec = CODECS[endpoint] if endpoint == "chat" else None
        key = request.context.key
        if codec is None or key.cache is False or model not in self._groups:
            return None
        asked = directive(request.context)
        if asked == "no-store" or not repeatable(request.body, endpoint, self._config.cache_all):
            return SemanticLook(None, exact, codec)
        context: list[Any] = [endpoint, self._model, VERSION if self._centre else None]
        if self._config.per_key:
            context.append(key.id)
        about = subject(request.body, model, context)
        if len(about.text) > self._semantic.max_chars:
            return SemanticLook(None, exact, codec)
        text = text_key(about.text)
        if asked != "refresh":
            same = self._store.same_text(about.scope, text)
            ahead = self._flights.same_text(about.scope, text) if same is None else None
            if ahead is not None:  # the same text is being asked: its answer, unembedded
                same = await ahead.wait(self._wait)
            if same is not None:
                return SemanticLook(self, exact, codec, about, found=Found(same, 1.0))
        flight = self._flights.start(about.scope, text)
        try:
            vector = await self._embed(request, about.text)
            found = None
            if vector is not None:
                found = await self._search(about.scope, flight, vector, asked != "refresh")
        except BaseException:
            flight.land(None)
            raise
        if vector is None:
            flight.land(None)
            return SemanticLook(None, exact, codec)
        if found is not None:
            flight.land(found.entry)  # those waiting for this request are answered alike
            return SemanticLook(self, exact, codec, about, vector, found)
        return SemanticLook(self, exact, codec, about, vector, flight=flight)

    async def _search(self, scope: str, flight: Flight, vector: Vector, read: bool) -> Found | None:
        """The stored entry nearest `vector`, if similar enough, else the answer of a
        flight as near (`read`: this request may be answered from the cache); None: this
        request makes the call, others waiting for it."""
        threshold = self._semantic.threshold
        ahead = self._flights.embedded(flight, vector, threshold)
        if not read:
            return None
        nearest = self._store.nearest(scope, vector)
        if nearest is not None and nearest.similarity >= threshold:
            return nearest
        if ahead is None:
            return None
        leader, similarity = ahead
        entry = await leader.wait(self._wait)
        return Found(entry, similarity) if entry is not None else None

    async def _embed(self, request: ChatRequest, text: str) -> Vector | None:
        """`text`'s unit vector (centred, for the embedded model), None if it could not
        be had, or if `max_inflight` calls are being made already: a request does not
        queue behind other requests' embeddings (the embedded model makes one at a time)."""
        if self._inflight >= self._semantic.max_inflight:
            return None
        self._inflight += 1
        try:
            vectors = await self._vectors(request.context.request_id, [text])
            if vectors is None or self._centre is None:
                return None if vectors is None else vectors[0]
            return await self._centre.apply(vectors[0])
        finally:
            self._inflight -= 1

    async def _vectors(self, request_id: str, texts: list[str]) -> Vectors | None:
        """The unit vectors of `texts` by the embedding model, in one call."""
        body = {"model": self._model, "input": texts}
        call = ChatRequest(body, orjson.dumps(body), RequestContext(request_id, INTERNAL_KEY))
        try:
            plan = self._executor.plan(self._model, EMBEDDINGS)
            used = self._meter.start(call, "embeddings", strip_usage=False)
            answer = await self._executor.call(call, plan, embed_route, used)
            data = sorted(answer.data["data"], key=lambda item: item["index"])
            vectors = np.asarray([item["embedding"] for item in data], dtype=np.float32)
        except (GatewayError, LookupError, TypeError, ValueError) as exc:
            self._warn(exc)
            return None
        if vectors.ndim != 2 or vectors.shape[0] != len(texts) or not vectors.shape[1]:
            return None
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms)) or not np.all(norms):
            return None
        unit: Vectors = (vectors / norms).astype(np.float32)
        return unit

    async def _vectors_for_reference(self, texts: list[str]) -> Vectors | None:
        return await self._vectors("semantic-cache-reference", texts)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            log.warning("semantic cache: no embedding from %s (%s); bypassed", self._model, exc)

    def put(
        self,
        about: Subject,
        vector: Vector,
        answer: dict[str, Any],
        provider: str | None,
        list_cost: float,
    ) -> Entry:
        """The new entry, kept unless it is too large."""
        entry, raw = Entry.make(answer, provider, list_cost)
        if len(raw) <= self._config.max_entry_bytes:
            self._store.add(about.scope, vector, about.text, entry, raw)
        return entry

    def hit(self, request: ChatRequest, endpoint: str, entry: Entry) -> None:
        """A hit's usage row: flagged semantic, nothing paid, its list cost saved."""
        tokens, provider, listed = entry.tokens, entry.provider, entry.list_cost_usd
        self._meter.hit(request, endpoint, entry.answer, tokens, provider, listed, semantic=True)

    async def aclose(self) -> None:
        await self._store.aclose()
