"""The path of every model call: access → response cache → client rate limits → budget →
executor → settle.

Chat, legacy completions, embeddings, Messages and Responses all come through here, and
images, audio and moderations too (admitted and billed by their units, never cached);
they differ only in how a deployment is called. Answers are neutral (OpenAI-shaped payloads
and chunk streams) and carry the headers the client is owed. A cache hit makes no
upstream attempt and counts only against its key's rpm (see `Admission.admit_hit`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from savegate.core.errors import GatewayError
from savegate.core.media import MediaAnswer, MediaUse
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.core.tokens import estimate_tokens
from savegate.core.usage import TokenCounts
from savegate.metering.meter import Meter, RequestMeter
from savegate.providers.base import ByteStream, ChatStream
from savegate.routing.bytes import RoutedBytes
from savegate.routing.executor import Call, Capability, Executor, Open, OpenBytes
from savegate.routing.router import Route
from savegate.service.admission import Admission, check_model_access, max_output
from savegate.service.cache import Look

if TYPE_CHECKING:  # the semantic cache needs the embeddings service, which needs this one
    from savegate.service.caches import Caches
    from savegate.service.semantic import SemanticLook

T = TypeVar("T")
# The answer length a request that sets no limit is priced at, to pick its cheapest route.
ESTIMATED_OUTPUT_TOKENS = 256


def demand(request: ChatRequest, endpoint: str) -> TokenCounts:
    """The request's estimated tokens, by which `strategy: cheapest` prices deployments."""
    output = max_output(request.body)
    if output is None:
        output = 0 if endpoint == "embeddings" else ESTIMATED_OUTPUT_TOKENS
    return TokenCounts(
        prompt=estimate_tokens(request.raw), completion=output * int(request.body.get("n") or 1)
    )


@dataclass(frozen=True, slots=True)
class Reply(Generic[T]):
    value: T
    headers: dict[str, str] = field(default_factory=dict)


class Pipeline:
    def __init__(
        self,
        admission: Admission,
        executor: Executor,
        meter: Meter,
        cache: Caches | None = None,
    ) -> None:
        self._admission = admission
        self._executor = executor
        self._meter = meter
        self._cache = cache

    async def call(
        self,
        request: ChatRequest,
        endpoint: str,
        invoke: Call,
        supports: Capability | None = None,
        keep_after: Callable[[], Awaitable[None]] | None = None,
    ) -> Reply[Json]:
        """`keep_after`: what the cache waits for before it keeps the answer."""
        request.context.outcome.model = request.model
        check_model_access(request)
        look = await self._cache.look(request, endpoint) if self._cache else None
        if look is None:
            reply, _ = await self._call(request, endpoint, invoke, supports)
            return reply
        if look.entry is not None:
            return await self._hit(look, request, lambda: look.serve(request, endpoint))
        try:
            reply, used = await self._call(request, endpoint, invoke, supports)
            if keep_after is not None:
                await keep_after()
            await look.keep(reply.value.data, used)
        finally:
            await look.release()
        return Reply(reply.value, {**reply.headers, **look.headers})

    async def _call(
        self, request: ChatRequest, endpoint: str, invoke: Call, supports: Capability | None
    ) -> tuple[Reply[Json], RequestMeter]:
        plan = self._executor.plan(request.model, supports, demand(request, endpoint))
        ticket = await self._admission.admit(request, plan, endpoint)
        used = self._meter.start(ticket.request, endpoint, strip_usage=False)
        try:
            answer = await self._executor.call(ticket.request, plan, invoke, used)
        except GatewayError as exc:
            raise ticket.refused(exc) from None
        finally:
            await ticket.settle(used)
        return Reply(answer, ticket.headers), used

    async def _hit(
        self, look: Look | SemanticLook, request: ChatRequest, answer: Callable[[], T]
    ) -> Reply[T]:
        """A cache hit: no upstream attempt (not even a plan: the entry's key names the
        public model that answered), no budget; it counts against the key's rpm."""
        headers = await self._admission.admit_hit(request)
        return Reply(answer(), {**headers, **look.headers})

    async def media(
        self,
        request: ChatRequest,
        endpoint: str,
        invoke: Callable[[Route, ChatRequest], Awaitable[MediaAnswer]],
        supports: Capability,
        bound: MediaUse,
    ) -> Reply[MediaAnswer]:
        """An image, audio or moderation call: admitted by `bound` (the most it may
        use), billed by the units its answer reports."""
        check_model_access(request)
        plan = self._executor.plan(request.model, supports)
        ticket = await self._admission.admit(request, plan, endpoint, bound)
        used = self._meter.start(ticket.request, endpoint, strip_usage=False)
        try:
            answer = await self._executor.call(ticket.request, plan, invoke, used)
        except GatewayError as exc:
            raise ticket.refused(exc) from None
        finally:
            await ticket.settle(used)
        return Reply(answer, ticket.headers)

    async def media_stream(
        self,
        request: ChatRequest,
        endpoint: str,
        open_stream: OpenBytes,
        supports: Capability,
        bound: MediaUse,
        use: MediaUse,
    ) -> Reply[ByteStream]:
        """A body relayed as it arrives (speech, transcription events), billed by `use`."""
        check_model_access(request)
        plan = self._executor.plan(request.model, supports)
        ticket = await self._admission.admit(request, plan, endpoint, bound)
        used = self._meter.start(ticket.request, endpoint, strip_usage=False)
        try:
            stream = await self._executor.stream_bytes(ticket.request, plan, open_stream, used, use)
        except GatewayError as exc:
            await ticket.settle(used)
            raise ticket.refused(exc) from None
        except BaseException:
            await ticket.settle(used)
            raise
        return Reply(SettledBytes(stream, lambda: ticket.settle(used)), ticket.headers)

    def served_with(self, model: str, supports: Capability) -> bool:
        """Whether every deployment a request for `model` may reach has the ability."""
        try:
            plan = self._executor.plan(model)
        except GatewayError:
            return False  # the call itself will say why
        return all(supports.check(attempt.deployment.provider) for attempt in plan)

    async def stream(
        self,
        request: ChatRequest,
        endpoint: str,
        open_stream: Open,
        supports: Capability | None = None,
        *,
        reports_usage: bool = False,
    ) -> Reply[ChatStream]:
        """Open a stream. Failures before the first chunk raise here, before the caller
        has sent a byte, so they can still become an HTTP error status. A stream that
        `reports_usage` unasked (Responses events) is neither asked for it nor stripped
        of it."""
        outcome = request.context.outcome
        outcome.model, outcome.stream = request.model, True
        check_model_access(request)
        look = await self._cache.look(request, endpoint) if self._cache else None
        if look is None:
            reply, _ = await self._open(request, endpoint, open_stream, supports, reports_usage)
            return reply
        if look.entry is not None:
            return await self._hit(look, request, lambda: look.replay(request, endpoint))
        try:
            reply, used = await self._open(request, endpoint, open_stream, supports, reports_usage)
        except BaseException:
            await look.release()
            raise
        return Reply(look.record(reply.value, used), {**reply.headers, **look.headers})

    async def _open(
        self,
        request: ChatRequest,
        endpoint: str,
        open_stream: Open,
        supports: Capability | None,
        reports_usage: bool,
    ) -> tuple[Reply[ChatStream], RequestMeter]:
        plan = self._executor.plan(request.model, supports, demand(request, endpoint))
        wants_usage = request.include_usage or reports_usage
        if not wants_usage:  # always asked upstream: it is what the stream is billed by
            options = {**(request.body.get("stream_options") or {}), "include_usage": True}
            request = request.with_field("stream_options", options)
        ticket = await self._admission.admit(request, plan, endpoint)
        used = self._meter.start(ticket.request, endpoint, strip_usage=not wants_usage)
        try:
            stream = await self._executor.stream(ticket.request, plan, open_stream, used)
        except GatewayError as exc:
            await ticket.settle(used)
            raise ticket.refused(exc) from None
        except BaseException:
            await ticket.settle(used)
            raise
        return Reply(Settled(stream, lambda: ticket.settle(used)), ticket.headers), used


Item = TypeVar("Item")
Yielded = TypeVar("Yielded", covariant=True)


class Closeable(Protocol[Yielded]):
    def __aiter__(self) -> AsyncIterator[Yielded]: ...

    async def aclose(self) -> None: ...


class Settled(Generic[Item]):
    """A stream (of chunks, or of an upstream's bytes) whose request settles its limits
    when the stream is closed. Not a stage: iterating it iterates the stream itself."""

    def __init__(self, stream: Closeable[Item], settle: Callable[[], Awaitable[None]]) -> None:
        self._stream = stream
        self._settle = settle

    def __aiter__(self) -> AsyncIterator[Item]:
        return aiter(self._stream)

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            await self._settle()


class SettledBytes(Settled[bytes]):
    def __init__(self, stream: RoutedBytes, settle: Callable[[], Awaitable[None]]) -> None:
        super().__init__(stream, settle)
        self.content_type = stream.content_type
