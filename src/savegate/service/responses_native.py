"""Responses a native upstream (`responses: native`) made and keeps: where each lives is
remembered, so that `GET`/`DELETE /v1/responses/{id}` and its `input_items` reach the
provider and the upstream key that made it, for the gateway key that made it only.

Remembering makes the client wait for nothing it can avoid, yet a GET sent once the answer
arrived finds the row on any worker or replica: the database is what they share, so the row
is committed before the client can know the answer is done. A stream names its response in
its first event: the row is written while the answer is generated, and only the event that
ends the stream waits for it (by then long written). A whole answer names it once complete:
the row is written while its usage is settled, and the answer waits for that one insert.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from savegate.core.errors import NotFound, ProviderError
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers.base import ChatProvider, ChatStream, ResponsesProvider
from savegate.routing.router import Route
from savegate.store.responses import NativeResponse, NativeResponseStore
from savegate.wire.chunks import Chunks

# The query parameters OpenAI takes on a stored response and on its input items.
_RETRIEVE = frozenset({"include", "include[]"})
_LIST = frozenset({"limit", "order", "after", "include", "include[]"})
# The events after which a stream sends nothing more (their `type`, as it is written).
_ENDS = (b'"response.completed"', b'"response.incomplete"', b'"response.failed"')


def _native(route: Route) -> ResponsesProvider:
    provider = route.provider
    assert isinstance(provider, ResponsesProvider)
    return provider


def _ends(batch: Chunks) -> bool:
    """Whether the batch holds the event that ends a stream (or, rarely, text that says
    its name: only a wait for the row, then)."""
    sse = batch.sse
    return any(end in sse for end in _ENDS)


def _query(raw: bytes, allowed: frozenset[str]) -> str:
    """The client's query string, less the parameters the upstream is not to see."""
    kept = [(k, v) for k, v in parse_qsl(raw.decode("latin-1"), True) if k in allowed]
    return "?" + urlencode(kept) if kept else ""


class NativeCall:
    """One native `POST /v1/responses`: its calls to the deployments tried, and the row
    that remembers the response the one that answered made."""

    def __init__(self, responses: NativeResponses, key_id: str, store: bool) -> None:
        self._responses = responses
        self._key_id = key_id
        self._store = store  # false: the request said `store: false`, nothing to read back
        self._route: Route | None = None  # the deployment whose stream opened
        self._writing: asyncio.Task[None] | None = None

    async def respond(self, route: Route, request: ChatRequest) -> Json:
        answer = await _native(route).respond(request, route.upstream_model)
        if self._store:
            self._remember(route, answer.data)  # parsed once: metering reads it next
        return answer

    async def open(self, route: Route, request: ChatRequest) -> ChatStream:
        stream = await _native(route).stream_response(request, route.upstream_model)
        self._route = route  # the last one opened: those before it failed
        return stream

    async def written(self) -> None:
        """Once the row is in (or failed, which is logged): the answer may go out."""
        if self._writing is not None:
            await asyncio.shield(self._writing)

    def remembering(self, stream: ChatStream) -> ChatStream:
        """The stream, remembering its response; a cache hit (no deployment called) and
        `store: false` are left as they are."""
        if not self._store or self._route is None:
            return stream
        return _Remembering(stream, self)

    def started(self, batch: Chunks) -> None:
        """The stream's first events: the first one, `response.created`, names it."""
        assert self._route is not None
        event = batch.items[0].data
        self._remember(self._route, event.get("response") if isinstance(event, dict) else None)

    def must_wait(self, batch: Chunks) -> bool:
        """Whether `batch` ends the stream while the row is still being written."""
        writing = self._writing
        return writing is not None and not writing.done() and _ends(batch)

    def _remember(self, route: Route, response: Any) -> None:
        if not isinstance(response, dict) or response.get("store") is False:
            return
        response_id = response.get("id")
        if isinstance(response_id, str) and response_id:
            self._writing = self._responses.remember(response_id, self._key_id, _native(route))


class _Remembering:
    """A native stream whose response is remembered from its first batch on; the batch
    that ends it waits for the row, so a GET after it finds the response."""

    def __init__(self, stream: ChatStream, call: NativeCall) -> None:
        self._stream = stream
        self._call = call
        self._batches: AsyncGenerator[Chunks, None] | None = None

    def __aiter__(self) -> AsyncIterator[Chunks]:
        if self._batches is None:
            self._batches = self._read()
        return self._batches

    async def _read(self) -> AsyncGenerator[Chunks, None]:
        call = self._call
        batches = aiter(self._stream)
        first = await anext(batches, None)
        if first is None:
            return
        if _ends(first):  # the whole answer in one read
            call.started(first)
            await call.written()
            yield first
        else:
            try:
                yield first  # out before the row is begun: the first byte waits for nothing
            finally:
                call.started(first)  # the client knows the id now, even if it goes
        async for batch in batches:
            if call.must_wait(batch):
                await call.written()
            yield batch

    async def aclose(self) -> None:
        if self._batches is not None:
            await self._batches.aclose()
        await self._stream.aclose()


class NativeResponses:
    """Remembers where native responses live and reaches them there."""

    def __init__(
        self, store: NativeResponseStore, adapters: Callable[[], Iterable[ChatProvider]]
    ) -> None:
        self._store = store
        self._adapters = adapters  # a callable: a reload swaps the providers
        self._writing: set[asyncio.Task[None]] = set()

    def call(self, key_id: str, store: bool) -> NativeCall:
        return NativeCall(self, key_id, store)

    def remember(
        self, response_id: str, key_id: str, provider: ResponsesProvider
    ) -> asyncio.Task[None]:
        """Start writing the row; the task is held until it is done, however the request
        that started it ends."""
        task = asyncio.create_task(
            self._store.remember(response_id, key_id, provider.name, provider.account)
        )
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)
        return task

    async def find(self, key_id: str, response_id: str) -> NativeResponse | None:
        return await self._store.find(key_id, response_id)

    async def retrieve(self, found: NativeResponse, response_id: str, query: bytes) -> Json:
        path = quote(response_id, safe="") + _query(query, _RETRIEVE)
        return await self._upstream(found, response_id).stored("GET", path)

    async def input_items(self, found: NativeResponse, response_id: str, query: bytes) -> Json:
        path = quote(response_id, safe="") + "/input_items" + _query(query, _LIST)
        return await self._upstream(found, response_id).stored("GET", path)

    async def delete(self, key_id: str, found: NativeResponse, response_id: str) -> Json:
        """Deleted upstream, then forgotten; forgotten too if the upstream has it no more."""
        try:
            answer = await self._upstream(found, response_id).stored(
                "DELETE", quote(response_id, safe="")
            )
        except ProviderError as exc:
            if exc.upstream_status == 404:
                await self._store.forget(key_id, response_id)
            raise
        await self._store.forget(key_id, response_id)
        return answer

    def _upstream(self, found: NativeResponse, response_id: str) -> ResponsesProvider:
        """The provider's adapter with the upstream key that made the response; failing
        that (the key was replaced), its first: a key rotated in the same account still
        reaches it, and another account says itself that it has no such response."""
        first: ResponsesProvider | None = None
        for adapter in self._adapters():
            if adapter.name != found.provider or not isinstance(adapter, ResponsesProvider):
                continue
            if adapter.account == found.account:
                return adapter
            first = first or adapter
        if first is None:
            raise NotFound(
                f"Response with id '{response_id}' was made by the provider "
                f"'{found.provider}', which is no longer configured.",
                code="not_found",
            )
        return first

    async def aclose(self) -> None:
        """Wait for the rows still being written (at shutdown)."""
        await asyncio.gather(*self._writing)
        await self._store.aclose()
