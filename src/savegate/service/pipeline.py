"""The path of every model call: access → client rate limits → budget → executor → settle.

Chat, legacy completions, embeddings, Messages and Responses all come through here; they
differ only in how a deployment is called. Answers are neutral (OpenAI-shaped payloads
and chunk streams) and carry the headers the client is owed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from savegate.core.errors import GatewayError
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.metering.meter import Meter
from savegate.providers.base import ChatStream
from savegate.routing.executor import Call, Capability, Executor, Open
from savegate.service.admission import Admission, check_model_access
from savegate.wire.chunks import Chunks

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Reply(Generic[T]):
    value: T
    headers: dict[str, str] = field(default_factory=dict)


class Pipeline:
    def __init__(self, admission: Admission, executor: Executor, meter: Meter) -> None:
        self._admission = admission
        self._executor = executor
        self._meter = meter

    async def call(
        self, request: ChatRequest, endpoint: str, invoke: Call, supports: Capability | None = None
    ) -> Reply[Json]:
        request.context.outcome.model = request.model
        check_model_access(request)
        plan = self._executor.plan(request.model, supports)
        ticket = await self._admission.admit(request, plan, endpoint)
        used = self._meter.start(ticket.request, endpoint, strip_usage=False)
        try:
            answer = await self._executor.call(ticket.request, plan, invoke, used)
        except GatewayError as exc:
            raise ticket.refused(exc) from None
        finally:
            await ticket.settle(used)
        return Reply(answer, ticket.headers)

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
        return Reply(SettledStream(stream, lambda: ticket.settle(used)), ticket.headers)


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
