"""Responses a native upstream (`responses: native`) made and keeps: where each lives is
remembered, so that `GET`/`DELETE /v1/responses/{id}` and its `input_items` reach the
provider and the upstream key that made it, for the gateway key that made it only, and a
turn that continues one (`previous_response_id`) is refused to any other key and sent
with that upstream key. A response the gateway does not know (made before it remembered
them, or at the upstream directly) is the upstream's to find or not.

A cache hit replays a response with its id, as the upstream made it: the key it is
replayed to may then reach it too, read it back and continue from it (it has seen all it
holds: the cache key is the whole request), but its delete forgets only its own way to the
response; the key that made it deletes it upstream.

Remembering makes the client wait for nothing it can avoid, yet a GET sent once the answer
arrived finds the row on any worker or replica: the database is what they share, so the row
is committed before the client can know the answer is done. A stream names its response in
its first event: the row is written while the answer is generated, and only the event that
ends the stream waits for it (by then long written). A whole answer names it once complete:
the row is written while its usage is settled, and the answer waits for that one insert,
and so does the response cache before it keeps the answer: it may replay it at once to
another key (one that waited for the same call), whose row is made from this one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from savegate.core.errors import NotFound, ProviderError
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers.base import ChatProvider, ChatStream, ResponsesProvider
from savegate.routing.executor import Capability
from savegate.routing.router import Route
from savegate.store.responses import NativeResponse, NativeResponseStore
from savegate.wire.chunks import Chunks

# The query parameters OpenAI takes on a stored response and on its input items.
_RETRIEVE = frozenset({"include", "include[]"})
_LIST = frozenset({"limit", "order", "after", "include", "include[]"})
# The events after which a stream sends nothing more (their `type`, as it is written).
_ENDS = (b'"response.completed"', b'"response.incomplete"', b'"response.failed"')


NATIVE = Capability(
    "the Responses API natively", lambda provider: isinstance(provider, ResponsesProvider)
)


def previous_not_found(response_id: str) -> NotFound:
    """As OpenAI words it."""
    return NotFound(
        f"Previous response with id '{response_id}' not found.",
        param="previous_response_id",
        code="previous_response_not_found",
    )


def deleted(response_id: str) -> Json:
    return Json.of({"id": response_id, "object": "response", "deleted": True})


def _made(found: NativeResponse) -> Callable[[ChatProvider], bool]:
    """Whether a deployment calls the provider with the upstream key that made `found`."""

    def made(provider: ChatProvider) -> bool:
        return (
            isinstance(provider, ResponsesProvider)
            and provider.name == found.provider
            and provider.account == found.account
        )

    return made


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
    that remembers the response the one that answered made (or, for a cache hit, that
    this key may reach the response replayed to it)."""

    def __init__(
        self, responses: NativeResponses, key_id: str, store: bool, supports: Capability
    ) -> None:
        self._responses = responses
        self._key_id = key_id
        self._store = store  # false: the request said `store: false`, nothing to read back
        self.supports = supports  # pinned to the upstream key of the response it continues
        self._route: Route | None = None  # the deployment that answered; None: a cache hit
        self._writing: asyncio.Task[None] | None = None

    async def respond(self, route: Route, request: ChatRequest) -> Json:
        answer = await _native(route).respond(request, route.upstream_model)
        self._route = route
        if self._store:
            self._remember(answer.data)  # parsed once: metering reads it next
        return answer

    async def answered(self, answer: Json) -> None:
        """Once the whole answer's row is in: a cache hit's is begun here."""
        if self._route is None and self._store:
            self._remember(answer.data)
        await self.written()

    async def open(self, route: Route, request: ChatRequest) -> ChatStream:
        stream = await _native(route).stream_response(request, route.upstream_model)
        self._route = route  # the last one opened: those before it failed
        return stream

    async def written(self) -> None:
        """Once the row is in (or failed, which is logged): the answer may go out."""
        if self._writing is not None:
            await asyncio.shield(self._writing)

    def remembering(self, stream: ChatStream) -> ChatStream:
        """The stream, remembering its response (a cache hit's too); `store: false` is
        left as it is."""
        if not self._store:
            return stream
        return _Remembering(stream, self)

    def started(self, batch: Chunks) -> None:
        """The stream's first events: the first one, `response.created`, names it."""
        event = batch.items[0].data
        self._remember(event.get("response") if isinstance(event, dict) else None)

    def must_wait(self, batch: Chunks) -> bool:
        """Whether `batch` ends the stream while the row is still being written."""
        writing = self._writing
        return writing is not None and not writing.done() and _ends(batch)

    def _remember(self, response: Any) -> None:
        if not isinstance(response, dict) or response.get("store") is False:
            return
        response_id = response.get("id")
        if not isinstance(response_id, str) or not response_id:
            return
        if self._route is None:
            self._writing = self._responses.share(response_id, self._key_id)
        else:
            provider = _native(self._route)
            self._writing = self._responses.remember(response_id, self._key_id, provider)


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

    async def call(self, key_id: str, store: bool, previous: str | None) -> NativeCall:
        """A turn; one that continues `previous` is looked up first (the others are not)."""
        supports = NATIVE
        if previous is not None:
            found = await self._store.find(key_id, previous)
            if found is not None:
                if found.key_id != key_id:
                    raise previous_not_found(previous)  # the upstream is not asked
                supports = replace(NATIVE, pin=_made(found))
        return NativeCall(self, key_id, store, supports)

    def remember(
        self, response_id: str, key_id: str, provider: ResponsesProvider
    ) -> asyncio.Task[None]:
        """Start writing the row; the task is held until it is done, however the request
        that started it ends."""
        return self._hold(
            self._store.remember(response_id, key_id, provider.name, provider.account)
        )

    def share(self, response_id: str, key_id: str) -> asyncio.Task[None]:
        """Start writing that a cache hit replayed the response to `key_id`."""
        return self._hold(self._store.share(response_id, key_id))

    def _hold(self, write: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(write)
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)
        return task

    async def find(self, key_id: str, response_id: str) -> NativeResponse | None:
        """Where a response the key may reach lives; None for any other."""
        found = await self._store.find(key_id, response_id)
        return found if found is not None and found.key_id == key_id else None

    async def retrieve(self, found: NativeResponse, response_id: str, query: bytes) -> Json:
        path = quote(response_id, safe="") + _query(query, _RETRIEVE)
        return await self._upstream(found, response_id).stored("GET", path)

    async def input_items(self, found: NativeResponse, response_id: str, query: bytes) -> Json:
        path = quote(response_id, safe="") + "/input_items" + _query(query, _LIST)
        return await self._upstream(found, response_id).stored("GET", path)

    async def delete(self, key_id: str, found: NativeResponse, response_id: str) -> Json:
        """Deleted upstream, then forgotten by every key; forgotten too if the upstream has
        it no more. A key it was replayed to forgets its own way to it only."""
        if found.replayed:
            await self._store.forget(response_id, key_id)
            return deleted(response_id)
        try:
            answer = await self._upstream(found, response_id).stored(
                "DELETE", quote(response_id, safe="")
            )
        except ProviderError as exc:
            if exc.upstream_status == 404:
                await self._store.forget(response_id)
            raise
        await self._store.forget(response_id)
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
