"""Per-request accounting: reserve the worst case, meter what really happened, settle.

Every call through a provider goes through `Meter.call()` or `Meter.stream()`, so each
upstream call yields exactly one usage row, whether it succeeded, failed, or the client
went away. Streams always ask the provider for usage and strip it from what the client
receives unless the client asked for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from savegate.core.errors import GatewayError
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.limits.budget import BudgetBook, Reservation, limited
from savegate.metering.prices import PriceBook, Pricing
from savegate.metering.record import TokenCounts, UsageRecord
from savegate.metering.sink import UsageSink
from savegate.providers.base import ChatStream
from savegate.routing.router import Route
from savegate.wire.chunks import Chunks

DEFAULT_OUTPUT_CAP = 4096  # reserved when a limited key's request sets no output limit


def _max_output(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return int(value) if value else None


class Accounting:
    """One upstream call being metered."""

    def __init__(
        self,
        meter: Meter,
        request: ChatRequest,
        route: Route,
        endpoint: str,
        reservation: Reservation | None,
        pricing: Pricing,
    ) -> None:
        self._meter = meter
        self._request = request
        self._reservation = reservation
        self._pricing = pricing
        self._route = route
        self.record = UsageRecord(
            request_id=request.context.request_id,
            key_id=request.context.key.id,
            endpoint=endpoint,
            requested_model=request.model,
            stream=request.stream,
            model=route.upstream_model,
            provider=route.provider.name,
        )
        self._started = request.context.started
        self.done = False

    def first_token(self) -> None:
        if self.record.ttft_ms is None:
            self.record.ttft_ms = (time.perf_counter() - self._started) * 1000

    def finish(
        self,
        usage: dict[str, Any] | None,
        *,
        model: str | None = None,
        estimated_completion: int | None = None,
        error: GatewayError | None = None,
        disconnected: bool = False,
    ) -> None:
        if self.done:
            return
        self.done = True
        record = self.record
        tokens = TokenCounts.from_openai(usage)
        if usage is None and estimated_completion is not None:
            tokens = TokenCounts(prompt=self._prompt_estimate(), completion=estimated_completion)
            record.estimated = True
        record.tokens = tokens
        record.model = model or record.model
        pricing = self._pricing
        if pricing.list_price is None and model:
            # No price for the routed name: price by the model that really answered
            # (a dated id such as gpt-4o-2024-08-06 finds gpt-4o).
            pricing = self._meter.pricing(self._route, model)
        record.cost_usd, record.list_cost_usd = pricing.costs(tokens)
        record.latency_ms = (time.perf_counter() - self._started) * 1000
        record.client_disconnected = disconnected
        if error is not None:
            record.status = error.status
            record.error_type = error.code or error.type
        elif disconnected:
            record.status = 499
            record.error_type = "client_disconnected"
        self._meter.settle(self._reservation, self._request, record)

    def _prompt_estimate(self) -> int:
        # About four bytes a token: a figure marked as estimated, never a limit.
        return max(1, len(self._request.raw) // 4)


class Meter:
    def __init__(self, prices: PriceBook, budgets: BudgetBook, sink: UsageSink) -> None:
        self._prices = prices
        self._budgets = budgets
        self._sink = sink
        self._pricing: dict[tuple[str, str], Pricing] = {}

    def pricing(self, route: Route, model: str | None = None) -> Pricing:
        """The route's prices for `model` (by default the route's upstream model)."""
        model = model or route.upstream_model
        cache_key = (route.provider.name, model)
        pricing = self._pricing.get(cache_key)
        if pricing is None:
            billing = route.billing
            pricing = self._prices.pricing(
                model,
                discount=billing.discount,
                paid=billing.paid,
                free=billing.free,
            )
            self._pricing[cache_key] = pricing
        return pricing

    async def _open(
        self, request: ChatRequest, route: Route, endpoint: str
    ) -> tuple[ChatRequest, Accounting]:
        pricing = self.pricing(route)
        key = request.context.key
        reservation = None
        if limited(key):
            # Every BPE token is at least one byte, so the body's size bounds the prompt.
            prompt_bound = len(request.raw) + 16
            output = _max_output(request.body)
            if output is None and endpoint != "embeddings":
                output = DEFAULT_OUTPUT_CAP
                request = request.with_field("max_tokens", output)
            n = int(request.body.get("n") or 1)
            output = (output or 0) * n
            reservation = await self._budgets.reserve(
                key, prompt_bound + output, pricing.worst_case(prompt_bound, output)
            )
        return request, Accounting(self, request, route, endpoint, reservation, pricing)

    def settle(
        self, reservation: Reservation | None, request: ChatRequest, record: UsageRecord
    ) -> None:
        request.context.tokens_used += record.tokens.total
        self._budgets.settle(reservation, request.context.key, record.tokens.total, record.cost_usd)
        self._sink.add(record)

    async def call(
        self,
        request: ChatRequest,
        route: Route,
        endpoint: str,
        call: Callable[[ChatRequest], Awaitable[Json]],
    ) -> Json:
        request, accounting = await self._open(request, route, endpoint)
        with _finished_on_failure(accounting):
            answer = await call(request)
        data = answer.data
        usage = data.get("usage") if isinstance(data, dict) else None
        accounting.finish(usage, model=data.get("model") if isinstance(data, dict) else None)
        return answer

    async def stream(
        self,
        request: ChatRequest,
        route: Route,
        endpoint: str,
        open_stream: Callable[[ChatRequest], Awaitable[ChatStream]],
    ) -> ChatStream:
        wants_usage = request.include_usage
        if not wants_usage:
            options = {**(request.body.get("stream_options") or {}), "include_usage": True}
            request = request.with_field("stream_options", options)
        request, accounting = await self._open(request, route, endpoint)
        with _finished_on_failure(accounting):
            upstream = await open_stream(request)
        return MeteredStream(upstream, accounting, strip_usage=not wants_usage)


def _usages(where: Chunks | bytes) -> int:
    """How many usage objects `where` seems to hold: a cheap test before parsing."""
    if isinstance(where, bytes):
        return where.count(b'"usage":{') + where.count(b'"usage": {')
    return where.occurrences(b'"usage":{') + where.occurrences(b'"usage": {')


@contextlib.contextmanager
def _finished_on_failure(accounting: Accounting) -> Iterator[None]:
    """A call that failed, or whose client went away, is recorded as such."""
    try:
        yield
    except GatewayError as exc:
        accounting.finish(None, error=exc)
        raise
    except asyncio.CancelledError:
        accounting.finish(None, estimated_completion=0, disconnected=True)
        raise


class MeteredStream:
    """Passes batches through untouched, noting usage, first token and failures."""

    def __init__(self, upstream: ChatStream, accounting: Accounting, strip_usage: bool) -> None:
        self._upstream = upstream
        self._accounting = accounting
        self._strip_usage = strip_usage
        self._chunks = 0
        self._usage: dict[str, Any] | None = None
        self._model: str | None = None

    def __aiter__(self) -> AsyncIterator[Chunks]:
        return self._relay()

    async def _relay(self) -> AsyncIterator[Chunks]:
        accounting = self._accounting
        try:
            async for batch in self._upstream:
                if usages := _usages(batch):
                    kept = self._take_usage(batch, usages)
                    if kept is None:
                        continue
                    batch = kept
                if not self._chunks:
                    accounting.first_token()
                self._chunks += len(batch)
                yield batch
        except GatewayError as exc:
            accounting.finish(
                self._usage, model=self._model, error=exc, estimated_completion=self._chunks
            )
            raise
        accounting.finish(self._usage, model=self._model, estimated_completion=self._chunks)

    def _take_usage(self, batch: Chunks, usages: int) -> Chunks | None:
        """Notes the usage in `batch` (`usages` mentions of it); returns what the client
        should see of it."""
        head, last = batch.split_last()
        if head is None or _usages(last.raw) == usages:  # the usual case: usage comes last
            if not self._is_usage_only(last):
                return batch
            return head
        kept = [chunk for chunk in batch if not self._is_usage_only(chunk)]
        return Chunks(kept) if kept else None

    def _is_usage_only(self, chunk: Json) -> bool:
        """Notes the chunk's usage, if any; true if it is to be stripped."""
        if not _usages(chunk.raw):
            return False
        data = chunk.data
        if not data.get("usage"):
            return False
        self._usage = data["usage"]
        self._model = data.get("model")
        return self._strip_usage and not data.get("choices")

    async def aclose(self) -> None:
        # Closed before the end: the client went away. Bill what was streamed.
        self._accounting.finish(
            self._usage, model=self._model, estimated_completion=self._chunks, disconnected=True
        )
        await self._upstream.aclose()
