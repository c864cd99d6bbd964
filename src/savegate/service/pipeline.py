"""The path of every model call: access → response cache → client rate limits → budget →
executor → settle.

Chat, legacy completions, embeddings, Messages and Responses all come through here; they
differ only in how a deployment is called. Answers are neutral (OpenAI-shaped payloads
and chunk streams) and carry the headers the client is owed. A cache hit makes no
upstream attempt and counts only against its key's rpm (see `Admission.admit_hit`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from savegate.core.errors import GatewayError
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.metering.meter import Meter, RequestMeter
from savegate.providers.base import ChatStream
from savegate.routing.executor import Call, Capability, Executor, Open
from savegate.service.admission import Admission, check_model_access
from savegate.service.cache import Look
from savegate.wire.chunks import Chunks

if TYPE_CHECKING:  # the semantic cache needs the embeddings service, which needs this one
    from savegate.service.semantic import Caches, SemanticLook

T = TypeVar("T")


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
        self, request: ChatRequest, endpoint: str, invoke: Call, supports: Capability | None = None
    ) -> Reply[Json]:
        check_model_access(request)
        look = await self._cache.look(request, endpoint) if self._cache else None
        if look is None:
            reply, _ = await self._call(request, endpoint, invoke, supports)
            return reply
        if look.entry is not None:
            return await self._hit(look, request, lambda: look.serve(request, endpoint))
        try:
            reply, used = await self._call(request, endpoint, invoke, supports)
            await look.keep(reply.value.data, used)
        finally:
            await look.release()
        return Reply(reply.value, {**reply.headers, **look.headers})

    async def _call(
        self, request: ChatRequest, endpoint: str, invoke: Call, supports: Capability | None
    ) -> tuple[Reply[Json], RequestMeter]:
        plan = self._executor.plan(request.model, supports)
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
        plan = self._executor.plan(request.model, supports)
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
        return Reply(SettledStream(stream, lambda: ticket.settle(used)), ticket.headers), used


class SettledStream:
    """A stream whose request settles its limits when the stream is closed. Not a stage:
    iterating it iterates the stream itself."""

    def __init__(self, stream: ChatStream, settle: Callable[[], Awaitable[None]]) -> None:
        self._stream = stream
        self._settle = settle

    def __aiter__(self) -> AsyncIterator[Chunks]:
        return aiter(self._stream)

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            await self._settle()
