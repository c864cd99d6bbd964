"""OTLP trace export requests (`ExportTraceServiceRequest`) in protobuf, encoded here.

The OpenTelemetry SDK's encoder builds a protobuf message object per span, attribute
and value (about 40 µs a span on the machine of bench/RESULTS.md, where a whole request
costs about 250 µs). Here a span is a few byte strings joined, and an attribute whose
value repeats (a model's or a provider's name) is encoded once and reused.

Field numbers: opentelemetry/proto/{collector/trace,trace,common,resource}/v1/*.proto.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

_TIMES = struct.Struct("<BQBQ").pack  # Span.start_time_unix_nano 7, end 8: fixed64
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
        return _SIZES[value]
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: `tag` is its key byte (field number << 3 | 2)."""
    return tag + varint(len(payload)) + payload


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
    pair of a key and a value once (but for `unique` keys)."""

    def __init__(self, tag: bytes, unique: frozenset[str] = frozenset()) -> None:
        self._tag = tag
        self._unique = unique
        # (key, value, its type: True == 1 == 1.0) → the pair's KeyValue field
        self._pairs: dict[tuple[str, Any, type], bytes] = {}
        self._keys: dict[str, bytes] = {}  # key → its KeyValue.key field

    def encode(self, attributes: Mapping[str, Any]) -> bytes:
        pairs = self._pairs
        parts = []
        for key, value in attributes.items():
            try:
                encoded = pairs.get((key, value, type(value)))
            except TypeError:  # a list
                encoded = None
            if encoded is None:
                encoded = self._pair(key, value)
            parts.append(encoded)
        return b"".join(parts)

    def _pair(self, key: str, value: Any) -> bytes:
        kind = type(value)
        prefix = self._keys.get(key)
        if prefix is None:
            prefix = self._keys[key] = _field(b"\x0a", key.encode())
        if value is None:
            encoded = b""
        elif kind is str and len(value) + len(prefix) < 124 and value.isascii():
            # The usual short string (an answer's id), its sizes each one byte: at once.
            size = len(value)
            encoded = b"%b%c%b\x12%c\x0a%c%b" % (
                self._tag,
                len(prefix) + size + 4,
                prefix,
                size + 2,
                size,
                value.encode(),
            )
        else:
            encoded = _field(self._tag, prefix + _field(b"\x12", _any_value(value)))
        # Not a list (unhashable), nor a tuple but of strings: (1,) == (1.0,).
        exact = kind is not list and (kind is not tuple or all(type(v) is str for v in value))
        if exact and key not in self._unique and len(self._pairs) < _CACHE_LIMIT:
            self._pairs[key, value, kind] = encoded
        return encoded


# One finished span, as the tracer hands it over: (trace id, span id, parent span id or
# None, `Encoder.fixed` of its name, kind and shared attributes, start and end in unix ns,
# its own attributes or None, the status message of a failed span or None). A tuple: a
# request makes two, and an object's attributes would cost more than the rest of it.
Span = tuple[bytes, bytes, bytes | None, bytes, int, int, Mapping[str, Any] | None, str | None]


class Encoder:
    """Export requests for one resource and instrumentation scope."""

    def __init__(self, resource: Mapping[str, Any], scope: str, version: str) -> None:
        # Resource (field 1 of ResourceSpans): attributes 1. Scope (field 1 of
        # ScopeSpans): name 1, version 2.
        self._resource = _field(b"\x0a", Attributes(b"\x0a").encode(resource))
        named = _field(b"\x0a", scope.encode()) + _field(b"\x12", version.encode())
        self._scope = _field(b"\x0a", named)
        self._attributes = Attributes(b"\x4a", _UNIQUE)  # Span.attributes is field 9

    def fixed(self, name: str, kind: int, attributes: Mapping[str, Any]) -> bytes:
        """A span's name (5), kind (6) and attributes, encoded once for the spans that
        share them."""
        return _field(b"\x2a", name.encode()) + _KINDS[kind] + self._attributes.encode(attributes)

    def request(self, spans: Sequence[Span]) -> bytes:
        """ExportTraceServiceRequest: resource_spans 1 → ResourceSpans: resource 1,
        scope_spans 2 → ScopeSpans: scope 1, spans 2."""
        span = self._span
        scope_spans = self._scope + b"".join([span(*s) for s in spans])
        resource_spans = self._resource + _field(b"\x12", scope_spans)
        return _field(b"\x0a", resource_spans)

    def _span(
        self,
        trace_id: bytes,
        span_id: bytes,
        parent_id: bytes | None,
        fixed: bytes,
        start: int,
        end: int,
        attributes: Mapping[str, Any] | None,
        error: str | None,
    ) -> bytes:
        """ScopeSpans.spans (2) → Span: trace_id 1, span_id 2, parent_span_id 4, name 5,
        kind 6, start 7, end 8, attributes 9, status 15 (message 2, code 3)."""
        encoded = b"".join(
            (
                b"\x0a\x10",
                trace_id,
                b"\x12\x08",
                span_id,
                b"" if parent_id is None else b"\x22\x08" + parent_id,
                fixed,
                _TIMES(0x39, start, 0x41, end),
                b"" if attributes is None else self._attributes.encode(attributes),
                b"" if error is None else _status(error),
            )
        )
        return b"\x12" + varint(len(encoded)) + encoded


def _status(error: str | None) -> bytes:
    if error is None:
        return b""
    return _field(b"\x7a", _field(b"\x12", error.encode()) + b"\x18" + varint(STATUS_ERROR))
