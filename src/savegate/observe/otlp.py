"""OTLP trace export requests (`ExportTraceServiceRequest`) in protobuf, encoded here.

The OpenTelemetry SDK's encoder builds a protobuf message object per span, attribute
and value (about 40 µs a span on the machine of bench/RESULTS.md, where a whole request
costs about 250 µs). Here a span is a few byte strings joined, and an attribute whose
value repeats (a model's or a provider's name) is encoded once and reused.

Field numbers: opentelemetry/proto/{collector/trace,trace,common,resource}/v1/*.proto.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

# Span: trace_id 1 (16 bytes), span_id 2 (8), parent_span_id 4 (8), each with its tag and
# size; start_time_unix_nano 7 and end 8, fixed64 each after its tag.
_ROOT = struct.Struct("<H16sH8sBQBQ").pack
_CHILD = struct.Struct("<H16sH8sH8sBQBQ").pack
_DOUBLE = struct.Struct("<d").pack
_CACHE_LIMIT = 4096
# Attributes whose values rarely repeat: not worth a place in the cache.
_UNIQUE = frozenset({"gen_ai.response.id", "gen_ai.input.messages", "gen_ai.output.messages"})
_SIZES = [bytes((size,)) for size in range(128)]
_KINDS = {kind: b"\x30" + bytes((kind,)) for kind in range(6)}  # Span.kind, field 6

K = TypeVar("K")

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
        self.tag = tag
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
                encoded = self._keep(key, value)
            parts.append(encoded)
        return b"".join(parts)

    def _keep(self, key: str, value: Any) -> bytes:
        """`pair`, kept for the next time unless the key is unique."""
        encoded = self.pair(key, value)
        kind = type(value)
        # Not a list (unhashable), nor a tuple but of strings: (1,) == (1.0,).
        exact = kind is not list and (kind is not tuple or all(type(v) is str for v in value))
        if exact and key not in self._unique and len(self._pairs) < _CACHE_LIMIT:
            self._pairs[key, value, kind] = encoded
        return encoded

    def pair(self, key: str, value: Any) -> bytes:
        """The `KeyValue` field of `key` and `value`; none for None."""
        prefix = self._keys.get(key)
        if prefix is None:
            prefix = self._keys[key] = _field(b"\x0a", key.encode())
        if value is None:
            encoded = b""
        elif type(value) is str and len(value) + len(prefix) < 124 and value.isascii():
            # The usual short string (an answer's id), its sizes each one byte: at once.
            size = len(value)
            encoded = b"%b%c%b\x12%c\x0a%c%b" % (
                self.tag,
                len(prefix) + size + 4,
                prefix,
                size + 2,
                size,
                value.encode(),
            )
        else:
            encoded = _field(self.tag, prefix + _field(b"\x12", _any_value(value)))
        return encoded


class Slot(dict[Any, bytes]):
    """One attribute that every span of a kind has (its key fixed, its value's type too):
    each value's `KeyValue` field, encoded at its first use. A value of None or () is no
    attribute."""

    def __init__(self, attributes: Attributes, key: str) -> None:
        super().__init__()
        self._attributes = attributes
        self._key = key

    def __missing__(self, value: Any) -> bytes:
        encoded = b"" if value is None or value == () else self._attributes.pair(self._key, value)
        if len(self) < _CACHE_LIMIT:
            self[value] = encoded
        return encoded


class Kind:
    """What spans alike share: their name (5), kind (6) and shared attributes encoded
    once, a `Slot` for each attribute they each have a value of, and the key of one whose
    values rarely repeat (an answer's id), with its `KeyValue`'s head for each size of a
    short ASCII string."""

    __slots__ = ("fixed", "heads", "slots", "unique")

    def __init__(
        self, fixed: bytes, slots: tuple[Slot, ...], unique: str | None, attributes: Attributes
    ) -> None:
        self.fixed = fixed
        self.slots = slots
        self.unique = unique or ""
        prefix = _field(b"\x0a", self.unique.encode())
        self.heads = (
            [
                b"%b%c%b\x12%c\x0a%c"
                % (attributes.tag, len(prefix) + size + 4, prefix, size + 2, size)
                for size in range(124 - len(prefix))
            ]
            if unique
            else []
        )


# One finished span: (trace id, span id, parent span id or None, its kind, start and end
# (`time.perf_counter`), a value for each of its kind's slots, the value of its kind's
# unique attribute or None, its other attributes or None, the status message of a failed
# span or None). A tuple: a request makes two, and an object's attributes would cost more
# than the rest of it. The kind is a `Kind` here, its number in the tracer's hands.
SpanOf = tuple[
    bytes,
    bytes,
    bytes | None,
    K,
    float,
    float,
    tuple[Any, ...],
    str | None,
    Mapping[str, Any] | None,
    str | None,
]
Span = SpanOf[Kind]


class Encoder:
    """Export requests for one resource and instrumentation scope."""

    def __init__(self, resource: Mapping[str, Any], scope: str, version: str) -> None:
        # Resource (field 1 of ResourceSpans): attributes 1. Scope (field 1 of
        # ScopeSpans): name 1, version 2.
        self._resource = _field(b"\x0a", Attributes(b"\x0a").encode(resource))
        named = _field(b"\x0a", scope.encode()) + _field(b"\x12", version.encode())
        self._scope = _field(b"\x0a", named)
        self._attributes = Attributes(b"\x4a", _UNIQUE)  # Span.attributes is field 9
        self._slots: dict[str, Slot] = {}
        self._heads: dict[int, bytes] = {}  # a span's size → its ScopeSpans.spans tag and size

    def kind(
        self,
        name: str,
        kind: int,
        attributes: Mapping[str, Any],
        keys: Sequence[str],
        unique: str | None = None,
    ) -> Kind:
        """The `Kind` of spans named `name`, of `kind`, sharing `attributes`, each with a
        value for every one of `keys` (and perhaps for `unique`)."""
        fixed = _field(b"\x2a", name.encode()) + _KINDS[kind] + self._attributes.encode(attributes)
        slots = tuple(self._slot(key) for key in keys)
        return Kind(fixed, slots, unique, self._attributes)

    def _slot(self, key: str) -> Slot:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = Slot(self._attributes, key)
        return slot

    def request(self, spans: Sequence[Span]) -> bytes:
        """ExportTraceServiceRequest: resource_spans 1 → ResourceSpans: resource 1,
        scope_spans 2 → ScopeSpans: scope 1, spans 2 → Span: trace_id 1, span_id 2,
        parent_span_id 4, name 5, kind 6, start 7, end 8, attributes 9, status 15."""
        scope = self._scope
        parts = [b"", b"", b"", scope]  # the heads, once the sizes are known
        heads = self._heads
        attributes = self._attributes.encode
        join = b"".join
        size = len(scope)
        pair = self._attributes.pair
        # From the monotonic clock to unix ns, as of now: a span is at most a batch old.
        offset = time.time_ns() - int(time.perf_counter() * 1e9)
        for trace_id, span_id, parent_id, kind, start, end, values, unique, other, error in spans:
            if unique is None:
                once = b""
            elif len(unique) < len(kind.heads) and unique.isascii():
                once = kind.heads[len(unique)] + unique.encode()
            else:
                once = pair(kind.unique, unique)
            start_ns, end_ns = int(start * 1e9) + offset, int(end * 1e9) + offset
            if parent_id is None:
                ids = _ROOT(0x100A, trace_id, 0x0812, span_id, 0x39, start_ns, 0x41, end_ns)
            else:
                ids = _CHILD(
                    0x100A,
                    trace_id,
                    0x0812,
                    span_id,
                    0x0822,
                    parent_id,
                    0x39,
                    start_ns,
                    0x41,
                    end_ns,
                )
            encoded = join(
                (
                    ids,
                    kind.fixed,
                    join(map(_get, kind.slots, values)),
                    once,
                    b"" if other is None else attributes(other),
                    b"" if error is None else _status(error),
                )
            )
            length = len(encoded)
            head = heads.get(length)
            if head is None:
                head = heads[length] = b"\x12" + varint(length)
            parts += (head, encoded)
            size += len(head) + length
        # resource_spans (1) → the resource, then scope_spans (2): the scope and spans.
        scope_head = b"\x12" + varint(size)
        parts[1] = self._resource
        parts[2] = scope_head
        parts[0] = b"\x0a" + varint(len(self._resource) + len(scope_head) + size)
        return join(parts)


_get = dict.__getitem__  # through a `Slot`'s __missing__


def _status(error: str) -> bytes:
    """Status (15): message 2, code 3."""
    return _field(b"\x7a", _field(b"\x12", error.encode()) + b"\x18" + varint(STATUS_ERROR))
