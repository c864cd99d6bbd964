"""OpenTelemetry traces: a SERVER span per request, a CLIENT span per upstream attempt,
with the GenAI semantic conventions' attributes, sent over OTLP/HTTP.

An incoming W3C `traceparent` is continued (its sampled flag decides, as the SDK's
parent-based sampler does), otherwise `sample_ratio` of new traces are kept, by trace id
as the SDK's `TraceIdRatioBased` does. Every upstream call carries a `traceparent` naming
its attempt's span, so the upstream's own spans join the trace. Prompts and answers are
recorded only with `record_content`.

Spans are recorded and encoded here rather than through the SDK's span pipeline, which
costs about as much per request as the rest of the gateway (see `otlp.py`); the SDK
gives the resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, its own
attributes). It is imported only when tracing is on.
"""

from __future__ import annotations

import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from savegate import __version__
from savegate.core.outcome import Outcome
from savegate.core.payload import Json
from savegate.core.propagation import UPSTREAM_TRACEPARENT
from savegate.core.route import Target
from savegate.metering.meter import AttemptMeter
from savegate.observe.export import SpanExporter
from savegate.observe.otlp import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, Encoder, SpanData
from savegate.wire.chunks import Chunks

_OPERATIONS = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings"}
_PARAMETERS = (
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("max_output_tokens", "gen_ai.request.max_tokens"),
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("seed", "gen_ai.request.seed"),
)
_HEX = frozenset("0123456789abcdef")
_STATICS = 4096  # distinct kinds of span whose shared attributes are kept encoded
_FINISH_REASON = re.compile(rb'"finish_reason":\s*"([^"]+)"')
_ID = re.compile(rb'"id":\s*"([^"]+)"')


class RequestSpan:
    """The request's span, or (`data` None) the trace it belongs to, unrecorded."""

    __slots__ = ("data", "parent", "sampled", "trace_id")

    def __init__(
        self, trace_id: bytes, parent: bytes | None, sampled: bool, data: SpanData | None
    ) -> None:
        self.trace_id = trace_id
        self.parent = parent  # the caller's span id, when the trace came in
        self.sampled = sampled
        self.data = data


def parse_traceparent(value: bytes) -> tuple[bytes, bytes, bool] | None:
    """(trace id, parent span id, sampled) of a W3C `traceparent`, or None if invalid."""
    text = value.decode("latin-1").strip().lower()
    parts = text.split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    version, trace, parent, flags = parts[:4]
    if version == "00" and len(parts) != 4:
        return None
    if len(trace) != 32 or len(parent) != 16 or len(flags) != 2:
        return None
    if not _HEX.issuperset(version + trace + parent + flags):
        return None
    if trace == "0" * 32 or parent == "0" * 16:
        return None
    return bytes.fromhex(trace), bytes.fromhex(parent), bool(int(flags, 16) & 1)


def traceparent(trace_id: bytes, span_id: bytes, sampled: bool) -> str:
    return f"00-{trace_id.hex()}-{span_id.hex()}-{'01' if sampled else '00'}"


class Tracer:
    def __init__(
        self,
        exporter: SpanExporter,
        encoder: Encoder,
        *,
        sample_ratio: float,
        record_content: bool,
        providers: dict[str, tuple[str, str | None, int | None]],
    ) -> None:
        """`providers`: each provider's `gen_ai.provider.name`, host and port."""
        self.exporter = exporter
        self._encoder = encoder
        # What the spans of one deployment (or one kind of request) share, encoded once.
        self._statics: dict[tuple[Any, ...], tuple[str, bytes]] = {}
        self._bound = round(sample_ratio * 2**64)  # TraceIdRatioBased's
        self._content = record_content
        self._providers = providers
        self._random = random.Random()

    def start_request(self, outcome: Outcome, headers: Iterable[tuple[bytes, bytes]]) -> None:
        incoming = None
        for name, value in headers:
            if name == b"traceparent":
                incoming = parse_traceparent(value)
                break
        if incoming is not None:
            trace_id, parent, sampled = incoming
        else:
            trace_id, parent = self._random.getrandbits(128).to_bytes(16, "big"), None
            sampled = int.from_bytes(trace_id[8:], "big") < self._bound
        data = None
        if sampled:
            span_id = self._random.getrandbits(64).to_bytes(8, "big")
            data = SpanData(trace_id, span_id, parent, "", SPAN_KIND_SERVER, time.time_ns(), {})
        outcome.span = RequestSpan(trace_id, parent, sampled, data)

    def end_request(self, outcome: Outcome, method: str) -> None:
        span: RequestSpan | None = outcome.span
        if span is None or span.data is None:
            return
        data = span.data
        data.end = time.time_ns()
        shared = (method, outcome.endpoint, outcome.status, outcome.model, outcome.provider)
        data.name, data.static = self._static(
            (*shared, outcome.deployment, outcome.error_type),
            lambda: self._request_static(outcome, method),
        )
        if outcome.attempts:
            attributes = data.attributes
            attributes["gen_ai.usage.input_tokens"] = outcome.tokens.prompt
            attributes["gen_ai.usage.output_tokens"] = outcome.tokens.completion
            attributes["savegate.attempts"] = outcome.attempts
        if outcome.error_type is not None and outcome.status >= 500:
            data.error = outcome.error_type
        self.exporter.add(data)

    def _static(
        self, key: tuple[Any, ...], build: Callable[[], tuple[str, dict[str, Any]]]
    ) -> tuple[str, bytes]:
        """A span's name and its shared attributes, encoded, for spans alike in `key`."""
        found = self._statics.get(key)
        if found is None:
            name, attributes = build()
            found = (name, self._encoder.attributes(attributes))
            if len(self._statics) < _STATICS:
                self._statics[key] = found
        return found

    def _request_static(self, outcome: Outcome, method: str) -> tuple[str, dict[str, Any]]:
        provider = outcome.provider
        attributes = {
            "http.request.method": method,
            "http.route": outcome.endpoint,
            "http.response.status_code": outcome.status,
            "gen_ai.request.model": outcome.model,
            "gen_ai.provider.name": None if provider is None else self._provider(provider)[0],
            "savegate.deployment": outcome.deployment,
            "error.type": outcome.error_type,
        }
        return f"{method} {outcome.endpoint}", attributes

    def _provider(self, name: str) -> tuple[str, str | None, int | None]:
        return self._providers.get(name, (name, None, None))

    def start_attempt(self, attempt: AttemptMeter) -> None:
        request_span: RequestSpan | None = attempt.request.context.outcome.span
        if request_span is None:
            return
        if not request_span.sampled:
            # Not recorded here: the upstream continues the caller's trace, if any.
            parent = request_span.parent
            value = None if parent is None else traceparent(request_span.trace_id, parent, False)
            UPSTREAM_TRACEPARENT.set(value)
            return
        assert request_span.data is not None
        target = attempt.target
        endpoint = attempt.record.endpoint
        name, static = self._static(
            (endpoint, target.provider, target.model, target.deployment),
            lambda: self._attempt_static(endpoint, attempt.target),
        )
        attributes: dict[str, Any] = {}
        body = attempt.request.body
        for field, attribute in _PARAMETERS:
            value = body.get(field)
            if isinstance(value, int | float) and not isinstance(value, bool):
                attributes[attribute] = value
        if self._content:
            attributes["gen_ai.input.messages"] = _input(body)
            attempt.kept = []
        elif attempt.request.stream:
            attempt.kept = deque(maxlen=2)  # where the finish reasons are
        span_id = self._random.getrandbits(64).to_bytes(8, "big")
        data = SpanData(
            request_span.trace_id,
            span_id,
            request_span.data.span_id,
            name,
            SPAN_KIND_CLIENT,
            time.time_ns(),
            attributes,
        )
        data.static = static
        attempt.observed = data
        UPSTREAM_TRACEPARENT.set(traceparent(data.trace_id, span_id, True))

    def _attempt_static(self, endpoint: str, target: Target) -> tuple[str, dict[str, Any]]:
        operation = _OPERATIONS.get(endpoint, "chat")
        provider, host, port = self._provider(target.provider)
        attributes = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": target.model,
            "server.address": host,
            "server.port": port,
            "savegate.deployment": target.deployment,
        }
        return f"{operation} {target.model}", attributes

    def end_attempt(self, attempt: AttemptMeter) -> None:
        data: SpanData | None = attempt.observed
        if data is None:
            return
        data.end = time.time_ns()
        record = attempt.record
        attributes = data.attributes
        attributes["gen_ai.response.model"] = record.model
        tokens = record.tokens
        attributes["gen_ai.usage.input_tokens"] = tokens.prompt
        attributes["gen_ai.usage.output_tokens"] = tokens.completion
        if tokens.cached:
            attributes["gen_ai.usage.cache_read.input_tokens"] = tokens.cached
        if attempt.answer is not None or self._content:
            payloads = _payloads(attempt.answer, attempt.kept)
            reasons = _finish_reasons(payloads)
            response_id = next((c["id"] for c in payloads if isinstance(c.get("id"), str)), None)
            if self._content:
                attributes["gen_ai.output.messages"] = _output(payloads)
        else:
            reasons, response_id = _stream_ending(attempt.kept or ())
        if reasons:
            attributes["gen_ai.response.finish_reasons"] = tuple(reasons)
        if response_id is not None:
            attributes["gen_ai.response.id"] = response_id
        if record.error_type is not None:
            attributes["error.type"] = record.error_type
            attributes["http.response.status_code"] = record.status
            data.error = record.error_type
        self.exporter.add(data)


def _payloads(answer: Json | None, kept: Iterable[Chunks] | None) -> list[dict[str, Any]]:
    """The answer, or the stream chunks kept, as dictionaries."""
    if answer is not None:
        return [answer.data] if isinstance(answer.data, dict) else []
    found = []
    for batch in kept or ():
        for chunk in batch:
            if isinstance(chunk.data, dict):
                found.append(chunk.data)
    return found


def _stream_ending(kept: Iterable[Chunks]) -> tuple[list[str], str | None]:
    """Finish reasons and the answer's id, read off the last batches' bytes: parsing
    every chunk of a stream would cost more than the span."""
    reasons: list[str] = []
    response_id = None
    for batch in kept:
        raw = batch.sse
        found = _FINISH_REASON.findall(raw)
        if found:
            reasons += [reason.decode() for reason in found]
            named = _ID.search(raw)
            response_id = named.group(1).decode() if named else response_id
    return reasons, response_id


def _choices(payloads: Sequence[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for payload in payloads:
        for choice in payload.get("choices") or ():
            if isinstance(choice, dict):
                yield choice


def _finish_reasons(payloads: Sequence[dict[str, Any]]) -> list[str]:
    return [str(c["finish_reason"]) for c in _choices(payloads) if c.get("finish_reason")]


def _input(body: dict[str, Any]) -> str:
    messages = body.get("messages", body.get("input", body.get("prompt")))
    return orjson.dumps(messages).decode()


def _output(payloads: Sequence[dict[str, Any]]) -> str:
    """The answer's messages; a stream's deltas joined into one per choice."""
    texts: dict[int, list[str]] = {}
    for choice in _choices(payloads):
        part = choice.get("message") or choice.get("delta") or {}
        text = part.get("content") if isinstance(part, dict) else None
        if text is None:
            text = choice.get("text")  # legacy completions
        if isinstance(text, str):
            texts.setdefault(int(choice.get("index") or 0), []).append(text)
    messages = [{"role": "assistant", "content": "".join(texts[i])} for i in sorted(texts)]
    return orjson.dumps(messages).decode()


def resource(service_name: str) -> dict[str, Any]:
    """The SDK's resource (its own attributes and `OTEL_RESOURCE_ATTRIBUTES`), named
    `service_name` unless `OTEL_SERVICE_NAME` names it."""
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource

    attributes = dict(Resource.create({SERVICE_VERSION: __version__}).attributes)
    if str(attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        attributes[SERVICE_NAME] = service_name
    return attributes


def scope_encoder(service_name: str) -> Encoder:
    return Encoder(resource(service_name), "savegate", __version__)
