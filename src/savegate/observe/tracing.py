"""OpenTelemetry traces: a SERVER span per request, a CLIENT span per upstream attempt,
with the GenAI semantic conventions' attributes, sent over OTLP/HTTP.

An incoming W3C `traceparent` is continued (its sampled flag decides, as the SDK's
parent-based sampler does), otherwise `sample_ratio` of new traces are kept, by trace id
as the SDK's `TraceIdRatioBased` does. Every upstream call carries a `traceparent` naming
its attempt's span, so the upstream's own spans join the trace. Prompts and answers are
recorded only with `record_content`.

Spans are recorded here rather than through the SDK's span pipeline, which costs about
as much per request as the rest of the gateway (see `otlp.py`), and handed to the
gateway's sidecar (`sidecar.py`), which encodes and exports them; the SDK gives that
process the resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, its own attributes).
"""

from __future__ import annotations

import random
import re
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from savegate.core.outcome import Outcome
from savegate.core.payload import Json
from savegate.core.propagation import UPSTREAM_TRACEPARENT
from savegate.core.route import Target
from savegate.metering.meter import AttemptMeter
from savegate.observe.otlp import SPAN_KIND_CLIENT, SPAN_KIND_SERVER
from savegate.observe.sidecar import Sidecar
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
_FIELDS = frozenset(field for field, _ in _PARAMETERS)
_ATTRIBUTE_OF = dict(_PARAMETERS)
_ORDER = {field: index for index, (field, _) in enumerate(_PARAMETERS)}  # the last one wins
_LOW64 = 2**64 - 1
_NUMBERS = (int, float)  # not a bool
_HEX = frozenset("0123456789abcdef")
_KINDS = 4096  # distinct kinds of span whose shared attributes are kept encoded
_FINISH_REASON = re.compile(rb'"finish_reason":\s*"([^"]+)"')
_ID = re.compile(rb'"id":\s*"([^"]+)"')
# What every span of a request (of an attempt) has a value of, in its values' order.
_REQUEST_SLOTS = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "savegate.attempts")
_ATTEMPT_SLOTS = (
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.response.finish_reasons",
)
_ATTEMPT_UNIQUE = "gen_ai.response.id"
_UNSENT: tuple[int | None, ...] = (None, None, None)  # no attempt made: no usage


# A request's span, begun: (trace id, span id, the caller's span id or None, its first
# attempt's span id, drawn with the others). An attempt's: (trace id, its request's span
# id, span id). Their times are the request's and the meter's own (`time.perf_counter`).
Begun = tuple[bytes, bytes, bytes | None, bytes]
AttemptBegun = tuple[bytes, bytes, bytes]


def parse_traceparent(value: str) -> tuple[bytes, bytes, bool] | None:
    """(trace id, parent span id, sampled) of a W3C `traceparent`, or None if invalid."""
    text = value.strip().lower()
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
        exporter: Sidecar,
        *,
        sample_ratio: float,
        record_content: bool,
        providers: dict[str, tuple[str, str | None, int | None]],
    ) -> None:
        """`providers`: each provider's `gen_ai.provider.name`, host and port."""
        self.exporter = exporter
        # The kind of span of one deployment (or one kind of request): what they share.
        self._kinds: dict[tuple[Any, ...], int] = {}
        self._bound = round(sample_ratio * 2**64)  # TraceIdRatioBased's
        self._all = self._bound >= 2**64
        self._content = record_content
        self._providers = providers
        self._random = random.Random()

    def start_request(self, outcome: Outcome, incoming: str | None) -> None:
        """`outcome.span`: the request's span `Begun`; or, unrecorded, the `traceparent`
        that continues the caller's trace upstream, or None. `incoming`: the caller's
        `traceparent` header."""
        if incoming is not None:
            caller = parse_traceparent(incoming)
            if caller is not None:
                trace_id, parent, sampled = caller
                if sampled:
                    ids = self._random.getrandbits(128).to_bytes(16, "big")
                    outcome.span = (trace_id, ids[:8], parent, ids[8:])
                else:  # not recorded here: the upstream continues the caller's trace
                    outcome.span = traceparent(trace_id, parent, False)
                return
        bits = self._random.getrandbits(256)  # a trace id and two span ids
        # The trace id's low half decides, as the SDK's does (all pass at a ratio of 1).
        if self._all or (bits >> 128) & _LOW64 < self._bound:
            ids = bits.to_bytes(32, "big")
            outcome.span = (ids[:16], ids[16:24], None, ids[24:])

    def end_request(self, outcome: Outcome, method: str) -> None:
        begun = outcome.span
        if type(begun) is not tuple:
            return
        trace_id, span_id, parent, _ = begun
        error_type = outcome.error_type
        key = (
            method,
            outcome.endpoint,
            outcome.status,
            outcome.model,
            outcome.provider,
            outcome.deployment,
            error_type,
        )
        kind = self._kinds.get(key)
        if kind is None:
            name, shared = self._request_static(outcome, method)
            kind = self._keep(key, name, SPAN_KIND_SERVER, shared, _REQUEST_SLOTS)
        values = _UNSENT
        if attempts := outcome.attempts:
            tokens = outcome.tokens
            values = (tokens.prompt, tokens.completion, attempts)
        error = error_type if error_type is not None and outcome.status >= 500 else None
        end = time.perf_counter()
        span = (trace_id, span_id, parent, kind, outcome.started, end, values, None, None, error)
        self.exporter.add(span)

    def _keep(
        self,
        key: tuple[Any, ...],
        name: str,
        kind: int,
        shared: dict[str, Any],
        slots: tuple[str, ...],
        unique: str | None = None,
    ) -> int:
        """The kind of spans alike in `key`."""
        found = self.exporter.kind(name, kind, shared, slots, unique)
        if len(self._kinds) < _KINDS:
            self._kinds[key] = found
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
        outcome = attempt.request.context.outcome
        begun = outcome.span
        if type(begun) is not tuple:
            UPSTREAM_TRACEPARENT.set(begun)  # None, or the caller's trace, unrecorded
            return
        if self._content:
            attempt.kept = []
        elif attempt.request.stream:
            attempt.kept = deque(maxlen=2)  # where the finish reasons are
        trace_id = begun[0]
        if outcome.attempts == 1:
            span_id = begun[3]
        else:  # a retry, or the next deployment's
            span_id = self._random.getrandbits(64).to_bytes(8, "big")
        attempt.observed = (trace_id, begun[1], span_id)
        UPSTREAM_TRACEPARENT.set(traceparent(trace_id, span_id, True))

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
        observed: AttemptBegun | None = attempt.observed
        if observed is None:
            return
        record = attempt.record
        target = attempt.target
        endpoint = record.endpoint
        key = (endpoint, target.provider, target.model, target.deployment)
        kind = self._kinds.get(key)
        if kind is None:
            name, shared = self._attempt_static(endpoint, target)
            kind = self._keep(key, name, SPAN_KIND_CLIENT, shared, _ATTEMPT_SLOTS, _ATTEMPT_UNIQUE)
        tokens = record.tokens
        other: dict[str, Any] | None = None
        if tokens.cached:
            other = {"gen_ai.usage.cache_read.input_tokens": tokens.cached}
        body = attempt.request.body
        if named := _FIELDS.intersection(body):
            other = other or {}
            for field in sorted(named, key=_ORDER.__getitem__) if len(named) > 1 else named:
                if type(value := body[field]) in _NUMBERS:
                    other[_ATTRIBUTE_OF[field]] = value
        if self._content:
            payloads = _payloads(attempt.answer, attempt.kept)
            reasons = _finish_reasons(payloads)
            response_id = next((c["id"] for c in payloads if isinstance(c.get("id"), str)), None)
            other = other or {}
            other["gen_ai.input.messages"] = _input(body)
            other["gen_ai.output.messages"] = _output(payloads)
        elif attempt.answer is not None:
            reasons, response_id = _answer_ending(attempt.answer.data)
        else:
            choices = body.get("n") or 1
            reasons, response_id = _stream_ending(attempt.kept or (), choices)
        error = record.error_type
        if error is not None:
            other = other or {}
            other["error.type"] = error
            other["http.response.status_code"] = record.status
        values = (record.model, tokens.prompt, tokens.completion, tuple(reasons))
        trace_id, parent, span_id = observed
        start, end = attempt.began, attempt.ended_at
        span = (trace_id, span_id, parent, kind, start, end, values, response_id, other, error)
        self.exporter.add(span)


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


def _answer_ending(answer: dict[str, Any]) -> tuple[list[str], str | None]:
    """Finish reasons and the id of a whole answer."""
    choices = answer.get("choices")
    if type(choices) is list and len(choices) == 1 and type(choice := choices[0]) is dict:
        reason = choice.get("finish_reason")  # the usual answer, of one choice
        reasons = [str(reason)] if reason else []
    else:
        reasons = [
            str(c["finish_reason"])
            for c in choices or ()
            if isinstance(c, dict) and c.get("finish_reason")
        ]
    response_id = answer.get("id")
    return reasons, response_id if type(response_id) is str else None


def _stream_ending(kept: Sequence[Chunks], choices: int) -> tuple[list[str], str | None]:
    """Finish reasons and the answer's id, read off the last batches' bytes: parsing
    every chunk of a stream would cost more than the span. With one choice, its reason
    is the last `finish_reason` of the stream, found from the end."""
    reasons: list[str] = []
    response_id = None
    for batch in reversed(kept) if choices == 1 else kept:
        raw = batch.sse
        if choices == 1:
            at = raw.rfind(b'"finish_reason":')
            last = _FINISH_REASON.match(raw, at) if at >= 0 else None
            found = [last.group(1)] if last else []
        else:
            found = _FINISH_REASON.findall(raw)
        if found:
            reasons += [reason.decode() for reason in found]
            named = _ID.search(raw)
            response_id = named.group(1).decode() if named else response_id
        if choices == 1 and at >= 0:
            break
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
