"""Reads a `multipart/form-data` form to relay upstream (audio, image uploads) as it
arrives, with a streaming parser.

Each read goes through python-multipart as it comes: text fields are collected (small),
file parts kept as views into the reads themselves, so the upload is held once and the
form is known (its model checked, its size bounded) before anything goes upstream.
(`/v1/files` keeps its uploads instead: `api/multipart.py` writes them to disk.)
"""

from __future__ import annotations

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from savegate.api.http import ClientGone, HttpRequest, too_large
from savegate.api.multipart import boundary
from savegate.core.errors import InvalidRequest
from savegate.wire.multipart import MAX_PARTS, MAX_TEXT_BYTES, FilePart, Form


class _Collector:
    """python-multipart's callbacks: one part at a time, headers then data."""

    def __init__(self) -> None:
        self.form = Form()
        self.ended = False
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._text: bytearray | None = None
        self._file: FilePart | None = None
        self._name = ""
        self._text_bytes = 0

    def on_part_begin(self) -> None:
        if len(self.form.fields) + len(self.form.files) >= MAX_PARTS:
            raise InvalidRequest(f"A form may have at most {MAX_PARTS} parts.")
        self._headers = {}
        self._text = None
        self._file = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition"))
        if disposition != b"form-data" or b"name" not in options:
            raise InvalidRequest("Each part of a multipart body needs a form-data name.")
        self._name = options[b"name"].decode("utf-8", "replace")
        if b"filename" in options:
            content_type = self._headers.get(b"content-type", b"application/octet-stream")
            self._file = FilePart(
                self._name,
                options[b"filename"].decode("utf-8", "replace"),
                content_type.decode("latin-1"),
            )
        else:
            self._text = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self._file.data.append(memoryview(data)[start:end])
            return
        assert self._text is not None
        self._text_bytes += end - start
        if self._text_bytes > MAX_TEXT_BYTES:
            raise InvalidRequest(
                f"The text fields of this form are over {MAX_TEXT_BYTES} bytes together."
            )
        self._text += data[start:end]

    def on_part_end(self) -> None:
        if self._file is not None:
            self.form.files.append(self._file)
        elif self._text is not None:
            try:
                value = self._text.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRequest(
                    f"The form field '{self._name}' is not valid UTF-8.", param=self._name
                ) from None
            self.form.fields.append((self._name, value))

    def on_end(self) -> None:
        self.ended = True


async def read_form(request: HttpRequest, limit: int) -> Form:
    """The request's form, read to its end; 400 if it is no well-formed multipart body,
    413 past `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    collector = _Collector()
    callbacks = {
        name: getattr(collector, name) for name in dir(collector) if name.startswith("on_")
    }
    parser = MultipartParser(boundary(request), callbacks)  # type: ignore[arg-type]
    size = 0
    try:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            if chunk:
                parser.write(chunk)
            if not message.get("more_body"):
                break
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidRequest(f"The multipart body could not be parsed: {exc}") from None
    if not collector.ended:
        raise InvalidRequest("The multipart body ends before its closing boundary.")
    return collector.form
