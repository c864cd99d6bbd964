"""Per-attempt accounting: one usage row for every upstream call, whatever its end.

The executor reports each attempt through the hooks of `routing.hooks`; this module
implements them. A stream's usage chunk is noted as it passes and stripped from what the
client receives unless the client asked for it. A request's meter adds up its attempts,
so that the caller can settle budgets and rate limits with what was really used, and
adds them to the request's `Outcome`. An optional observer (the metrics, the tracer) is
told when each attempt starts and ends, and reads what it needs off the attempt.
"""

from __future__ import annotations

import time
from collections.abc import MutableSequence
from typing import Any, Protocol

from savegate.core.errors import GatewayError
from savegate.core.media import MediaUse
from savegate.core.payload import Json
from savegate.core.request import ChatRequest, RequestContext
from savegate.core.route import Target
from savegate.core.tokens import estimate_tokens
from savegate.core.usage import TokenCounts
from savegate.metering.prices import PriceBook, Pricing
from savegate.metering.record import UsageRecord
from savegate.metering.savings import Priced, Savings, price_call
from savegate.metering.sink import UsageSink
from savegate.wire.chunks import Chunks

_SAVED = 1024  # hits' savings remembered, by list cost


class AttemptObserver(Protocol):
    def attempt_started(self, attempt: AttemptMeter) -> None: ...

    def attempt_ended(self, attempt: AttemptMeter) -> None:
        """`attempt.record` is complete, and added to the request's outcome."""
        ...


class Meter:
    def __init__(
        self, prices: PriceBook, sink: UsageSink, observer: AttemptObserver | None = None
    ) -> None:
        self._prices = prices
        self._sink = sink
        self._pricing: dict[tuple[str, str], Pricing] = {}
        self._saved: dict[tuple[float, bool], Savings] = {}
        self.observer = observer

    def pricing(self, target: Target, model: str | None = None) -> Pricing:
        """The target's prices for `model` (by default the target's upstream model)."""
        model = model or target.model
        cache_key = (target.provider, model)
        pricing = self._pricing.get(cache_key)
        if pricing is None:
            billing = target.billing
            pricing = self._prices.pricing(
                model, discount=billing.discount, paid=billing.paid, free=billing.free
            )
            self._pricing[cache_key] = pricing
        return pricing

    def resolve(self, target: Target, public: str) -> Pricing:
        """The target's prices: by the upstream's model name, else by the public one (an
        Azure deployment name has no list price, the model it serves has)."""
        pricing = self.pricing(target)
        return pricing if pricing.known else self.pricing(target, public)

    def quote(self, target: Target, public: str, tokens: TokenCounts) -> float | None:
        """What `tokens` cost on `target` at the price paid; None when it has no price."""
        pricing = self.resolve(target, public)
        return pricing.paid_cost(tokens) if pricing.known else None

    def baseline(
        self, served: Pricing, target: Target, public: str, tokens: TokenCounts
    ) -> Pricing:
        """The pricing a call is measured against: the dearest of the target's peers for
        these tokens (a cheaper route was taken), else the served one's. A call at an
        unknown price saved nothing anyone can tell."""
        if not target.peers or not served.known:
            return served
        dearest, most = served, served.paid_cost(tokens)
        for peer in target.peers:
            pricing = self.resolve(peer, public)
            cost = pricing.paid_cost(tokens)
            if pricing.known and cost > most:
                dearest, most = pricing, cost
        return dearest

    def priced(
        self, target: Target, public: str, model: str | None, tokens: TokenCounts, batch: bool
    ) -> Priced:
        """What `tokens` of a call to `target` cost, listed and paid; `model` is the
        model that answered, `batch` whether the call was a batch line's."""
        pricing = self.pricing(target)
        if pricing.list_price is None and model:
            # No price for the routed name: price by the model that really answered
            # (a dated id such as gpt-4o-2024-08-06 finds gpt-4o).
            pricing = self.pricing(target, model)
        priced = price_call(pricing, self.baseline(pricing, target, public, tokens), tokens)
        return priced.batched(target.billing.batch_discount) if batch else priced

    def reprice(self, prices: PriceBook) -> None:
        """New list prices and deployments' billing (a reload): for what ends from now on."""
        self._prices, self._pricing = prices, {}

    def start(self, request: ChatRequest, endpoint: str, *, strip_usage: bool) -> RequestMeter:
        return RequestMeter(self, request, endpoint, strip_usage)

    def record(self, record: UsageRecord, context: RequestContext) -> None:
        if context.batch is not None:  # written with the batch line's result
            record.fit()
            context.batch.records.append(record)
            return
        self._sink.add(record)

    def hit(
        self,
        request: ChatRequest,
        endpoint: str,
        answer: dict[str, Any],
        tokens: TokenCounts,
        provider: str | None,
        list_cost: float,
        *,
        semantic: bool = False,
    ) -> None:
        """A request answered from the response cache (`semantic`: from the semantic
        cache): nothing paid, its list cost saved."""
        context = request.context
        elapsed = (time.perf_counter() - context.started) * 1000
        stream = request.stream
        # Positional, in the fields' order: by keyword the record took twice as long.
        record = UsageRecord(
            context.request_id,
            context.key.id,
            endpoint,
            request.model,
            stream,
            answer.get("model"),  # model
            provider,
            tokens,
            0.0,  # cost_usd
            list_cost,  # list_cost_usd
            self._hit_savings(list_cost, semantic),
            elapsed,  # latency_ms
            elapsed if stream else None,  # ttft_ms
            200,  # status
            None,  # error_type
            True,  # cache_hit
            False,  # client_disconnected
            False,  # estimated
            context.batch.batch_id if context.batch is not None else None,
            None,  # unit
            None,  # units
            semantic,  # semantic_cache_hit
        )
        self.record(record, context)
        # No attempt ends to say what answered: the hit does, for the access line and the
        # metrics (a replayed stream's 200 stands unless the client leaves during it).
        context.last_attempt = (record, None)
        outcome = context.outcome
        outcome.status, outcome.provider, outcome.tokens = 200, provider, tokens

    def _hit_savings(self, list_cost: float, semantic: bool) -> Savings:
        """A hit's savings, its whole list cost by the cache that served it: one object
        for each list cost seen lately (frozen, it is shared; made anew, it cost a
        microsecond, more than the rest of the row)."""
        saved = self._saved.get((list_cost, semantic))
        if saved is None:
            if len(self._saved) >= _SAVED:
                self._saved.clear()
            saved = (
                Savings(semantic_cache=list_cost) if semantic else Savings(response_cache=list_cost)
            )
            self._saved[(list_cost, semantic)] = saved
        return saved


class RequestMeter:
    """The attempts of one request; `tokens` and `cost` add up what they used, `answered`
    is the record of the attempt that answered (and `usage` what its upstream reported)."""

    def __init__(
        self, meter: Meter, request: ChatRequest, endpoint: str, strip_usage: bool
    ) -> None:
        self.meter = meter
        self.request = request
        self.endpoint = endpoint
        self.strip_usage = strip_usage
        self.tokens = 0
        self.cost = 0.0
        self.answered: UsageRecord | None = None
        self.usage: dict[str, Any] | None = None

    def attempt(self, target: Target) -> AttemptMeter:
        self.request.context.outcome.attempts += 1
        attempt = AttemptMeter(self, target)
        observer = self.meter.observer
        if observer is not None:
            observer.attempt_started(attempt)
        return attempt


def _usages(where: Chunks | bytes) -> int:
    """How many usage objects `where` seems to hold: a cheap test before parsing."""
    if isinstance(where, bytes):
        return where.count(b'"usage":{') + where.count(b'"usage": {')
    return where.occurrences(b'"usage":{') + where.occurrences(b'"usage": {')


class AttemptMeter:
    """One upstream call being metered."""

    def __init__(self, parent: RequestMeter, target: Target) -> None:
        request = parent.request
        context = request.context
        self._parent = parent
        self.target = target
        self._started = context.started
        self.began = time.perf_counter()
        self.first_byte_at: float | None = None
        self.ended_at = 0.0
        self._streamed: int | None = None  # chunks relayed, once a stream started
        self._usage: dict[str, Any] | None = None
        self._model: str | None = None
        self._done = False
        self.answer: Json | None = None  # a whole answer, once it came
        # Where an observer that asked for them gets the stream's batches (or the last few).
        self.kept: MutableSequence[Chunks] | None = None
        self.observed: Any = None  # the observer's own state for this attempt (a span)
        self.record = UsageRecord(
            request_id=context.request_id,
            key_id=context.key.id,
            endpoint=parent.endpoint,
            requested_model=request.model,
            stream=request.stream,
            model=target.model,
            provider=target.provider,
            batch_id=context.batch.batch_id if context.batch is not None else None,
        )

    @property
    def request(self) -> ChatRequest:
        return self._parent.request

    def first_byte(self) -> None:
        self._streamed = 0
        self.first_byte_at = now = time.perf_counter()
        self.record.ttft_ms = (now - self._started) * 1000

    def chunks(self, batch: Chunks) -> Chunks | None:
        keeping = self.kept
        if keeping is not None:
            keeping.append(batch)
        if usages := _usages(batch):
            kept = self._take_usage(batch, usages)
            if kept is None:
                return None
            batch = kept
        self._streamed = (self._streamed or 0) + len(batch)
        return batch

    def _take_usage(self, batch: Chunks, usages: int) -> Chunks | None:
        """Notes the usage in `batch` (`usages` mentions of it); returns what the client
        should see of it."""
        head, last = batch.split_last()
        if head is None or _usages(last.raw) == usages:  # the usual case: usage comes last
            if not self._is_usage_only(last):
                return batch
            return head
        kept = [chunk for chunk in batch if not self._is_usage_only(chunk)]
        if len(kept) == len(batch):
            return batch  # as it came, bytes and all
        return Chunks(kept) if kept else None

    def _is_usage_only(self, chunk: Json) -> bool:
        """Notes the chunk's usage, if any; true if it is to be stripped."""
        if not _usages(chunk.raw):
            return False
        data = chunk.data
        # A Responses event (`response.completed`) has it in its response.
        carrier = data.get("response") if isinstance(data.get("response"), dict) else data
        if not carrier.get("usage"):
            return False
        self._usage = carrier["usage"]
        self._model = carrier.get("model")
        return self._parent.strip_usage and not data.get("choices")

    def ended(
        self,
        *,
        answer: Json | None = None,
        use: MediaUse | None = None,
        error: GatewayError | None = None,
        cancelled: bool = False,
    ) -> None:
        if self._done:
            return
        self._done = True
        self.ended_at = ended_at = time.perf_counter()
        usage = None
        if use is not None:
            self._bill_units(use)
        else:
            usage = self._bill_tokens(answer, cancelled)
        record = self.record
        record.latency_ms = (ended_at - self._started) * 1000
        record.client_disconnected = cancelled
        if error is not None:
            record.status = error.status
            record.error_type = error.code or error.type
        elif cancelled:
            record.status = 499
            record.error_type = "client_disconnected"
        self._parent.tokens += record.tokens.total
        self._parent.cost += record.cost_usd
        if error is None and not cancelled:
            self._parent.answered, self._parent.usage = record, usage
        # Its record and target, not the meter: the meter refers back to the request.
        self._parent.request.context.last_attempt = (record, self.target)
        self._add_to_outcome(ended_at)
        self._parent.meter.record(record, self._parent.request.context)
        observer = self._parent.meter.observer
        if observer is not None:
            observer.attempt_ended(self)

    def _bill_units(self, use: MediaUse) -> None:
        """An image, audio or moderation call: priced by its units (and any tokens)."""
        record = self.record
        record.tokens = use.tokens
        record.unit, record.units = use.unit, use.units
        record.estimated = use.estimated
        pricing = self._parent.meter.resolve(self.target, self._parent.request.model)
        record.cost_usd, record.list_cost_usd = pricing.media_costs(use)
        record.savings = Savings(discount=record.list_cost_usd - record.cost_usd)

    def _bill_tokens(self, answer: Json | None, cancelled: bool) -> dict[str, Any] | None:
        """Prices the call by its tokens; returns the usage the upstream reported."""
        usage, model = self._usage, self._model
        if answer is not None and isinstance(answer.data, dict):
            self.answer = answer
            usage, model = answer.data.get("usage"), answer.data.get("model")
        record = self.record
        tokens = TokenCounts.from_openai(usage)
        if usage is None and (cancelled or self._streamed is not None):
            # Cut short before the upstream said: bill the prompt and what was streamed.
            prompt = estimate_tokens(self._parent.request.raw)
            tokens = TokenCounts(prompt=prompt, completion=self._streamed or 0)
            record.estimated = True
        record.tokens = tokens
        record.model = model or record.model
        meter = self._parent.meter
        priced = meter.priced(
            self.target, self._parent.request.model, model, tokens, record.batch_id is not None
        )
        record.cost_usd, record.list_cost_usd = priced.paid, priced.listed
        record.savings = priced.savings
        return usage

    def _add_to_outcome(self, ended_at: float) -> None:
        record = self.record
        outcome = self._parent.request.context.outcome
        outcome.provider = record.provider
        outcome.deployment = self.target.deployment
        outcome.status = record.status
        outcome.error_type = record.error_type
        outcome.tokens = record.tokens if outcome.attempts == 1 else outcome.tokens + record.tokens
        outcome.cost_usd += record.cost_usd
        outcome.list_cost_usd += record.list_cost_usd
        # Until the answer, or a stream's first chunk: what the upstream made the client wait.
        answered_at = self.first_byte_at or ended_at
        outcome.upstream_seconds += answered_at - self.began
        if self.first_byte_at is not None:
            outcome.ttft = self.first_byte_at - self._started
