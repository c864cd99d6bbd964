"""OTLP trace export requests (`ExportTraceServiceRequest`) in protobuf, encoded here.

The OpenTelemetry SDK's encoder builds a protobuf message object per span, attribute
and value (about 40 µs a span on the machine of bench/RESULTS.md, where a whole request
costs about 250 µs). Here a span is a few byte strings joined, and an attribute whose
value repeats (a model's or a provider's name) is encoded once and reused.

Field numbers: opentelemetry/proto/{collector/trace,trace,common,resource}/v1/*.proto.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_FIXED64 = struct.Struct("<Q").pack
_DOUBLE = struct.Struct("<d").pack
_CACHE_LIMIT = 4096
# Attributes whose values rarely repeat: not worth a place in the cache.
_UNIQUE = frozenset({"gen_ai.response.id", "gen_ai.input.messages", "gen_ai.output.messages"})
_SIZES = [bytes((size,)) for size in range(128)]
_KINDS = {kind: b"\x30" + bytes((kind,)) for kind in range(6)}  # Span.kind, field 6

SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
STATUS_ERROR = 2


def varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: `tag` is its key byte (field number << 3 | 2)."""
    size = len(payload)
    return tag + (_SIZES[size] if size < 128 else varint(size)) + payload


def _any_value(value: Any) -> bytes:
    """An `AnyValue`: string 1, bool 2, int 3, double 4, array 5 (of a list or tuple)."""
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + varint(value & 0xFFFF_FFFF_FFFF_FFFF)  # int64, two's complement
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, list | tuple):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(item)) for item in value))
    return _field(b"\x0a", str(value).encode())


class Attributes:
    """Encodes attributes as repeated `KeyValue` fields (`tag` per message kind): each
    key once, each string, boolean or tuple pair once (but for `unique` keys), each
    integer value once."""

    def __init__(self, tag: bytes, unique: frozenset[str] = frozenset()) -> None:
        self._tag = tag
        self._unique = unique
        self._pairs: dict[tuple[str, Any], bytes] = {}
        self._keys: dict[str, bytes] = {}  # key → its KeyValue.key field
        self._ints: dict[int, bytes] = {}  # value → its KeyValue.value field

    def encode(self, attributes: Mapping[str, Any]) -> bytes:
        pairs = self._pairs
        parts = []
        for key, value in attributes.items():
            kind = type(value)
            if kind is int:
                parts.append(self._field(key, self._int(value)))
            elif value is None:
                continue
            elif key in self._unique:
                parts.append(self._field(key, _field(b"\x12", _any_value(value))))
            else:
                if kind is list:
                    value = tuple(value)
                encoded = pairs.get((key, value))
                if encoded is None:
                    encoded = self._field(key, _field(b"\x12", _any_value(value)))
                    if len(pairs) < _CACHE_LIMIT:
                        pairs[key, value] = encoded
                parts.append(encoded)
        return b"".join(parts)

    def _field(self, key: str, value_field: bytes) -> bytes:
        prefix = self._keys.get(key)
        if prefix is None:
            prefix = self._keys[key] = _field(b"\x0a", key.encode())
        return _field(self._tag, prefix + value_field)

    def _int(self, value: int) -> bytes:
        encoded = self._ints.get(value)
        if encoded is None:
            encoded = _field(b"\x12", b"\x18" + varint(value & 0xFFFF_FFFF_FFFF_FFFF))
            if len(self._ints) < _CACHE_LIMIT:
                self._ints[value] = encoded
        return encoded


class SpanData:
    """One finished span, as the tracer hands it over."""

    __slots__ = (
        "attributes",
        "end",
        "error",
        "kind",
        "name",
        "parent_id",
        "span_id",
        "start",
        "static",
        "trace_id",
    )

    def __init__(
        self,
        trace_id: bytes,
        span_id: bytes,
        parent_id: bytes | None,
        name: str,
        kind: int,
        start: int,
        attributes: dict[str, Any],
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.name = name
        self.kind = kind
        self.start = start  # unix ns
        self.end = start
        self.attributes = attributes
        self.static = b""  # more attributes, encoded already (`Encoder.attributes`)
        self.error: str | None = None  # the status message of a failed span


class Encoder:
    """Export requests for one resource and instrumentation scope."""

    def __init__(self, resource: Mapping[str, Any], scope: str, version: str) -> None:
        # Resource (field 1 of ResourceSpans): attributes 1. Scope (field 1 of
        # ScopeSpans): name 1, version 2.
        self._resource = _field(b"\x0a", Attributes(b"\x0a").encode(resource))
        named = _field(b"\x0a", scope.encode()) + _field(b"\x12", version.encode())
        self._scope = _field(b"\x0a", named)
        self._attributes = Attributes(b"\x4a", _UNIQUE)  # Span.attributes is field 9
        self._names: dict[str, bytes] = {}

    def attributes(self, attributes: Mapping[str, Any]) -> bytes:
        """Span attributes encoded once, for the spans that share them (`SpanData.static`)."""
        return self._attributes.encode(attributes)

    def request(self, spans: Sequence[SpanData]) -> bytes:
        """ExportTraceServiceRequest: resource_spans 1 → ResourceSpans: resource 1,
        scope_spans 2 → ScopeSpans: scope 1, spans 2."""
        scope_spans = self._scope + b"".join(_field(b"\x12", self._span(s)) for s in spans)
        resource_spans = self._resource + _field(b"\x12", scope_spans)
        return _field(b"\x0a", resource_spans)

    def _span(self, span: SpanData) -> bytes:
        """Span: trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6, start 7, end 8,
        attributes 9, status 15 (message 2, code 3)."""
        name = self._names.get(span.name)
        if name is None:
            name = _field(b"\x2a", span.name.encode())
            if len(self._names) < _CACHE_LIMIT:
                self._names[span.name] = name
        parts: Iterable[bytes] = (
            b"\x0a\x10",
            span.trace_id,
            b"\x12\x08",
            span.span_id,
            b"\x22\x08" + span.parent_id if span.parent_id is not None else b"",
            name,
            _KINDS[span.kind],
            b"\x39",
            _FIXED64(span.start),
            b"\x41",
            _FIXED64(span.end),
            span.static,
            self._attributes.encode(span.attributes),
            _status(span.error),
        )
        return b"".join(parts)


def _status(error: str | None) -> bytes:
    if error is None:
        return b""
    return _field(b"\x7a", _field(b"\x12", error.encode()) + b"\x18" + varint(STATUS_ERROR))
