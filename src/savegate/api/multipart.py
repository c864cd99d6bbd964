"""A multipart/form-data upload read as it arrives: the file part goes straight to disk,
a chunk at a time, so a large upload is never held in memory; the other fields are small
strings, bounded."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

from savegate.api.http import ClientGone, HttpRequest
from savegate.core.errors import InvalidRequest, PayloadTooLarge
from savegate.store.blobs import BlobWriter

MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 32
FORM_OVERHEAD = 64 * 1024  # what besides the file a form may hold: boundaries, fields


@dataclass
class Upload:
    """What a form held: its fields, and its one file (written, not yet committed)."""

    fields: dict[str, str] = field(default_factory=dict)
    file: BlobWriter | None = None
    filename: str = ""


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)
    writer: BlobWriter | None = None


class _FormReader:
    """Turns the parser's callbacks (plain functions, called while it parses one chunk)
    into events, then acts on them, disk writes included, between chunks."""

    def __init__(
        self, file_field: str, open_file: Callable[[], Awaitable[BlobWriter]], max_bytes: int
    ) -> None:
        self._file_field = file_field
        self._open_file = open_file
        self._max_bytes = max_bytes
        self._events: list[tuple[str, bytes]] = []
        self._header = (bytearray(), bytearray())
        self._headers: dict[str, bytes] = {}
        self._part = _Part()
        self.upload = Upload()
        self.ended = False

    def callbacks(self) -> Any:
        def data(kind: str) -> Callable[[bytes, int, int], None]:
            return lambda chunk, start, end: self._events.append((kind, chunk[start:end]))

        def mark(kind: str) -> Callable[[], None]:
            return lambda: self._events.append((kind, b""))

        return {
            "on_header_field": data("field"),
            "on_header_value": data("value"),
            "on_part_data": data("data"),
            "on_header_end": mark("header_end"),
            "on_headers_finished": mark("headers_done"),
            "on_part_end": mark("part_end"),
            "on_end": mark("end"),
        }

    async def consume(self) -> None:
        events, self._events = self._events, []
        pending: list[bytes] = []  # the file's data in this chunk, written at once
        for kind, data in events:
            if kind == "data" and self._part.writer is not None:
                pending.append(data)
                continue
            if pending:
                await self._write(b"".join(pending))
                pending = []
            await self._event(kind, data)
        if pending:
            await self._write(b"".join(pending))

    async def _write(self, data: bytes) -> None:
        writer = self._part.writer
        assert writer is not None
        if writer.size + len(data) > self._max_bytes:
            raise PayloadTooLarge(f"File too large: the limit is {self._max_bytes} bytes.")
        await writer.write(data)

    async def _event(self, kind: str, data: bytes) -> None:
        name, value = self._header
        if kind == "field":
            name += data
        elif kind == "value":
            value += data
        elif kind == "header_end":
            self._headers[bytes(name).decode("latin-1").lower()] = bytes(value)
            self._header = (bytearray(), bytearray())
        elif kind == "headers_done":
            await self._begin_part()
        elif kind == "data":
            self._part.data += data
            if len(self._part.data) > MAX_FIELD_BYTES:
                raise InvalidRequest(f"Form field '{self._part.name}' is too long.")
        elif kind == "part_end":
            self._end_part()
        elif kind == "end":
            self.ended = True

    async def _begin_part(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        self._headers = {}
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        self._part = _Part(name, filename.decode("utf-8", "replace") if filename else None)
        if name == self._file_field and filename is not None:
            if self.upload.file is not None:
                raise InvalidRequest("Only one file may be uploaded at a time.", param=name)
            self._part.writer = self.upload.file = await self._open_file()
            self.upload.filename = self._part.filename or ""

    def _end_part(self) -> None:
        part = self._part
        if part.writer is None:
            if len(self.upload.fields) >= MAX_FIELDS:
                raise InvalidRequest("The form has too many fields.")
            self.upload.fields[part.name] = part.data.decode("utf-8", "replace")
        self._part = _Part()


def boundary(request: HttpRequest) -> bytes:
    """The request's multipart boundary; 400 if it is no multipart/form-data body."""
    content_type = request.headers.get("content-type")
    kind, options = parse_options_header(content_type)
    found = options.get(b"boundary")
    if kind != b"multipart/form-data" or not found:
        raise InvalidRequest(
            "This endpoint takes a multipart/form-data body (with a boundary), not "
            f"'{content_type or 'no content type'}'.",
            code="invalid_content_type",
        )
    return found


async def read_upload(
    request: HttpRequest,
    open_file: Callable[[], Awaitable[BlobWriter]],
    max_bytes: int,
    file_field: str = "file",
) -> Upload:
    """Read the request's form. The file part (`file_field`) is written through
    `open_file`'s writer, up to `max_bytes` (413 past that); the caller commits or
    discards it. Any failure discards it here."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + FORM_OVERHEAD:
        raise PayloadTooLarge(f"File too large: the limit is {max_bytes} bytes.")
    reader = _FormReader(file_field, open_file, max_bytes)
    parser = MultipartParser(boundary(request), reader.callbacks())
    try:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            parser.write(message.get("body", b""))
            await reader.consume()
            if not message.get("more_body"):
                break
        if not reader.ended:
            raise InvalidRequest("The multipart body ended before its closing boundary.")
    except MultipartParseError as exc:
        await _discard(reader.upload)
        raise InvalidRequest(f"The multipart body could not be parsed: {exc}") from None
    except BaseException:
        await _discard(reader.upload)
        raise
    return reader.upload


async def _discard(upload: Upload) -> None:
    if upload.file is not None:
        await upload.file.discard()
        upload.file = None
