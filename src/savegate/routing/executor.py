"""Trying a plan: retries on another deployment, fallbacks, backoff and timeouts.

A failure before the first byte (429, 5xx, timeout, connection error) moves on to the
next deployment after a jittered backoff that honours `retry-after`; a stream is peeked
(its first chunk read) before anything is sent to the client, so a provider that fails
at once can still be replaced. The client sees one answer or one clear error, and when
the gateway already retried it says so with `x-should-retry: false`. Each upstream call
is metered on its own.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from savegate.core.errors import GatewayError, InvalidRequest, ProviderError
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.metering.meter import Meter
from savegate.providers.base import ChatProvider, ChatStream
from savegate.routing.continuation import ContinuingStream
from savegate.routing.router import Attempt, ModelRouter, Route
from savegate.wire.chunks import Chunks

T = TypeVar("T")
Call = Callable[[Route, ChatRequest], Awaitable[Json]]
Open = Callable[[Route, ChatRequest], Awaitable[ChatStream]]


@dataclass(frozen=True, slots=True)
class Capability:
    """An optional provider ability an endpoint needs, such as embeddings."""

    name: str
    check: Callable[[ChatProvider], bool]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    attempt_timeout: float = 600.0
    total_timeout: float = 900.0
    backoff: float = 0.2
    max_retry_after: float = 10.0
    continue_streams: bool = False


class Executor:
    def __init__(self, router: ModelRouter, meter: Meter, policy: RetryPolicy) -> None:
        self._router = router
        self._meter = meter
        self._policy = policy

    def _attempts(self, request: ChatRequest, supports: Capability | None) -> list[Attempt]:
        attempts = self._router.plan(request.model)
        if supports is not None:
            attempts = [a for a in attempts if supports.check(a.deployment.provider)]
            if not attempts:
                raise InvalidRequest(
                    f"The model `{request.model}` does not support {supports.name}.",
                    param="model",
                )
        return attempts[: self._policy.max_attempts]

    async def _pause(self, tried: int, error: ProviderError, deadline: float) -> None:
        wait = self._policy.backoff * (2 ** (tried - 1)) * random.uniform(0.5, 1.5)
        if error.retry_after is not None and error.retry_after <= self._policy.max_retry_after:
            wait = max(wait, error.retry_after)
        # Other deployments are not bound by this one's retry-after: cap the pause.
        wait = min(wait, self._policy.max_retry_after, max(0.0, deadline - time.monotonic()))
        await asyncio.sleep(wait)

    async def _in_turn(
        self, attempts: list[Attempt], action: Callable[[Attempt], Awaitable[T]]
    ) -> T:
        """Run `action` on each attempt until one succeeds; failures that a retry may
        cure move on, others are raised at once."""
        deadline = time.monotonic() + self._policy.total_timeout
        last: ProviderError | None = None
        for tried, attempt in enumerate(attempts):
            if last is not None:
                await self._pause(tried, last, deadline)
            health = attempt.deployment.health
            health.begin()
            started = time.monotonic()
            try:
                async with asyncio.timeout(min(self._policy.attempt_timeout, deadline - started)):
                    result = await action(attempt)
            except TimeoutError:
                last = _timed_out(attempt)
                health.failed(None, time.monotonic())
                continue
            except ProviderError as exc:
                if not exc.retryable:
                    health.released()
                    raise
                health.failed(exc.retry_after, time.monotonic())
                last = exc
                continue
            except BaseException:
                health.released()
                raise
            health.succeeded(time.monotonic() - started)
            return result
        raise _final(last, len(attempts))

    async def call(
        self, request: ChatRequest, endpoint: str, invoke: Call, supports: Capability | None = None
    ) -> Json:
        async def attempt_call(attempt: Attempt) -> Json:
            return await self._meter.call(
                request, attempt.route, endpoint, lambda r: invoke(attempt.route, r)
            )

        return await self._in_turn(self._attempts(request, supports), attempt_call)

    async def stream(
        self,
        request: ChatRequest,
        endpoint: str,
        open_stream: Open,
        supports: Capability | None = None,
    ) -> ChatStream:
        tried: set[int] = set()
        stream = await self._stream(request, endpoint, open_stream, supports, tried)
        if self._policy.continue_streams and int(request.body.get("n") or 1) == 1:
            return ContinuingStream(
                stream,
                request,
                lambda again: self._stream(again, endpoint, open_stream, supports, tried),
            )
        return stream

    async def _stream(
        self,
        request: ChatRequest,
        endpoint: str,
        open_stream: Open,
        supports: Capability | None,
        skip: set[int],
    ) -> ChatStream:
        """The first deployment (not in `skip`) whose stream starts; it joins `skip`."""

        async def open_and_peek(attempt: Attempt) -> ChatStream:
            stream = await self._meter.stream(
                request, attempt.route, endpoint, lambda r: open_stream(attempt.route, r)
            )
            batches = aiter(stream)
            try:
                first = await anext(batches, None)
            except BaseException:
                await stream.aclose()
                raise
            skip.add(id(attempt.deployment))
            return PeekedStream(first, batches, stream)

        attempts = [a for a in self._attempts(request, supports) if id(a.deployment) not in skip]
        return await self._in_turn(attempts, open_and_peek)


def _timed_out(attempt: Attempt) -> ProviderError:
    return ProviderError(
        f"The upstream provider '{attempt.deployment.name}' did not answer in time.",
        status=504,
        code="upstream_timeout",
        retryable=True,
    )


def _final(last: ProviderError | None, attempts: int) -> GatewayError:
    if last is None:
        return GatewayError(
            "No deployment can serve this model right now.",
            status=503,
            code="no_deployment_available",
        )
    if attempts > 1:
        last.message = f"{last.message} (tried {attempts} deployments)"
        # We already retried upstream: the SDK should not retry on top of it.
        last.headers["x-should-retry"] = "false"
    return last


class PeekedStream:
    """A stream whose first batch was read early, to be sure it started."""

    def __init__(
        self, first: Chunks | None, rest: AsyncIterator[Chunks], stream: ChatStream
    ) -> None:
        self._first = first
        self._rest = rest
        self._stream = stream

    def __aiter__(self) -> AsyncIterator[Chunks]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[Chunks]:
        if self._first is None:
            return
        yield self._first
        async for batch in self._rest:
            yield batch

    async def aclose(self) -> None:
        await self._stream.aclose()
