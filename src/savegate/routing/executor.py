"""Trying a plan: retries on another deployment, fallbacks, backoff and timeouts.

A failure before the first byte (429, 5xx, timeout, connection error) moves on to the
next deployment after a jittered backoff that honours `retry-after`; a stream is peeked
(its first chunk read) before anything is sent to the client, so a provider that fails
at once can still be replaced. The client sees one answer or one clear error, and when
the gateway already retried it says so with `x-should-retry: false`. Each attempt is
reported to the caller's hooks (metering) as it starts and ends.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from savegate.core.errors import GatewayError, InvalidRequest, ProviderError, interruption
from savegate.core.media import MediaAnswer, MediaUse
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.core.usage import TokenCounts
from savegate.providers.base import ByteStream, ChatProvider, ChatStream
from savegate.routing.bytes import RoutedBytes
from savegate.routing.continuation import ContinuingStream
from savegate.routing.hooks import AttemptHook, CallHooks
from savegate.routing.router import Attempt, ModelRouter, Route
from savegate.routing.stream import RoutedStream
from savegate.wire.chunks import Chunks

T = TypeVar("T")
A = TypeVar("A", Json, MediaAnswer)
Call = Callable[[Route, ChatRequest], Awaitable[Json]]
Open = Callable[[Route, ChatRequest], Awaitable[ChatStream]]
OpenBytes = Callable[[Route, ChatRequest], Awaitable[ByteStream]]


@dataclass(frozen=True, slots=True)
class Capability:
    """An optional provider ability an endpoint needs, such as embeddings; for one
    request, maybe also the deployments it is to go to when it can (`pin`: the upstream
    key that keeps the conversation it continues)."""

    name: str
    check: Callable[[ChatProvider], bool]
    pin: Callable[[ChatProvider], bool] | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    attempt_timeout: float = 600.0
    total_timeout: float = 900.0
    backoff: float = 0.2
    max_retry_after: float = 10.0
    continue_streams: bool = False


class Executor:
    def __init__(self, router: ModelRouter, policy: RetryPolicy) -> None:
        self._router = router
        self._policy = policy

    def swap(self, router: ModelRouter, policy: RetryPolicy) -> None:
        """A reload: plans made from now on come from `router`, tried by `policy`. Plans
        already made (requests in flight) keep the deployments they hold."""
        self._router, self._policy = router, policy

    def plan(
        self, model: str, supports: Capability | None = None, demand: TokenCounts | None = None
    ) -> list[Attempt]:
        """The deployments to try for `model`, best first, at most `max_attempts`."""
        attempts = self._router.plan(model, demand, supports.pin if supports is not None else None)
        if supports is not None:
            attempts = [a for a in attempts if supports.check(a.deployment.provider)]
            if not attempts:
                raise InvalidRequest(
                    f"The model `{model}` does not support {supports.name}.", param="model"
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
        self,
        attempts: list[Attempt],
        hooks: CallHooks,
        action: Callable[[Attempt], Awaitable[T]],
    ) -> tuple[Attempt, AttemptHook, T]:
        """Run `action` on each attempt until one succeeds; failures that a retry may
        cure move on, others are raised at once. The attempt that succeeded is still in
        flight: the caller ends it."""
        deadline = time.monotonic() + self._policy.total_timeout
        last: ProviderError | None = None
        for tried, attempt in enumerate(attempts):
            if last is not None:
                await self._pause(tried, last, deadline)
            health = attempt.deployment.health
            hook = hooks.attempt(attempt.route.target)
            health.begin()
            started = time.monotonic()
            try:
                async with asyncio.timeout(min(self._policy.attempt_timeout, deadline - started)):
                    result = await action(attempt)
            except TimeoutError:
                last = _timed_out(attempt)
                hook.ended(error=last)
                health.failed(None, time.monotonic())
                continue
            except ProviderError as exc:
                hook.ended(error=exc)
                if not exc.retryable:
                    health.released()
                    raise
                health.failed(exc.retry_after, time.monotonic())
                last = exc
                continue
            except GatewayError as exc:
                hook.ended(error=exc)
                health.released()
                raise
            except Exception:
                hook.ended(error=GatewayError("The server had an error processing your request."))
                health.released()
                raise
            except BaseException as exc:
                cut = interruption(exc)
                if cut is not None:
                    hook.ended(error=cut)
                else:
                    hook.ended(cancelled=True)
                health.released()
                raise
            health.answered(time.monotonic() - started)
            return attempt, hook, result
        raise _final(last, len(attempts))

    async def call(
        self,
        request: ChatRequest,
        plan: list[Attempt],
        invoke: Callable[[Route, ChatRequest], Awaitable[A]],
        hooks: CallHooks,
    ) -> A:
        attempt, hook, answer = await self._in_turn(
            plan, hooks, lambda attempt: invoke(attempt.route, request)
        )
        attempt.deployment.health.released()
        if isinstance(answer, MediaAnswer):
            hook.ended(use=answer.use)
        else:
            hook.ended(answer=answer)
        return answer

    async def stream_bytes(
        self,
        request: ChatRequest,
        plan: list[Attempt],
        open_stream: OpenBytes,
        hooks: CallHooks,
        use: MediaUse,
    ) -> RoutedBytes:
        """Like `stream`, for a body relayed as bytes (audio), billed by `use` once its
        first byte came, however it ends."""

        async def open_and_peek(attempt: Attempt) -> tuple[ByteStream, AsyncIterator[bytes], bytes]:
            stream = await open_stream(attempt.route, request)
            reads = aiter(stream)
            try:
                first = await anext(reads, b"")
            except BaseException:
                await stream.aclose()
                raise
            return stream, reads, first

        attempt, hook, (stream, rest, first) = await self._in_turn(plan, hooks, open_and_peek)
        hook.first_byte()
        return RoutedBytes(stream, rest, first, hook, attempt.deployment.health, use)

    async def stream(
        self, request: ChatRequest, plan: list[Attempt], open_stream: Open, hooks: CallHooks
    ) -> ChatStream:
        tried: set[int] = set()
        stream = await self._stream(request, plan, open_stream, hooks, tried)
        if self._policy.continue_streams and int(request.body.get("n") or 1) == 1:
            return ContinuingStream(
                stream,
                request,
                lambda again: self._stream(again, plan, open_stream, hooks, tried),
            )
        return stream

    async def _stream(
        self,
        request: ChatRequest,
        plan: list[Attempt],
        open_stream: Open,
        hooks: CallHooks,
        skip: set[int],
    ) -> RoutedStream:
        """The first deployment (not in `skip`) whose stream starts; it joins `skip`."""

        async def open_and_peek(
            attempt: Attempt,
        ) -> tuple[ChatStream, AsyncIterator[Chunks], Chunks | None]:
            stream = await open_stream(attempt.route, request)
            batches = aiter(stream)
            try:
                first = await anext(batches, None)
            except BaseException:
                await stream.aclose()
                raise
            return stream, batches, first

        attempts = [a for a in plan if id(a.deployment) not in skip]
        attempt, hook, (stream, rest, first) = await self._in_turn(attempts, hooks, open_and_peek)
        skip.add(id(attempt.deployment))
        hook.first_byte()
        return RoutedStream(stream, rest, first, hook, attempt.deployment.health)


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
