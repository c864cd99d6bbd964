"""A `multipart/form-data` request as the gateway holds it, and its encoding upstream.

The file parts are the very bytes the client sent (views into what was read, never
copied); text fields are small. Encoding builds a body in parts around those views, so
an upload is in memory once however it is re-sent.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

MAX_TEXT_BYTES = 1024 * 1024  # all text fields of one form together
MAX_PARTS = 1000  # far beyond any form OpenAI takes; bounds what a form costs to hold


@dataclass(slots=True)
class FilePart:
    name: str
    filename: str
    content_type: str
    data: list[memoryview] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(len(view) for view in self.data)

    def head(self, length: int) -> bytes:
        """The first `length` bytes (a file's header), copied."""
        out = bytearray()
        for view in self.data:
            out += view[: length - len(out)]
            if len(out) >= length:
                break
        return bytes(out)


@dataclass(slots=True)
class Form:
    fields: list[tuple[str, str]] = field(default_factory=list)
    files: list[FilePart] = field(default_factory=list)

    def values(self) -> dict[str, str]:
        """Each text field's first value, by name."""
        found: dict[str, str] = {}
        for name, value in self.fields:
            found.setdefault(name, value)
        return found

    def file(self, *names: str) -> FilePart | None:
        return next((part for part in self.files if part.name in names), None)

    def encode(self, model: str) -> tuple[str, list[bytes | memoryview]]:
        """The content type and body parts of this form with `model` as its model."""
        boundary = f"savegate-{secrets.token_hex(16)}"
        dash = b"--" + boundary.encode()
        parts: list[bytes | memoryview] = []
        fields = [(n, model if n == "model" else v) for n, v in self.fields]
        for name, value in fields:
            parts.append(
                dash
                + f'\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'.encode()
                + value.encode()
                + b"\r\n"
            )
        for part in self.files:
            parts.append(
                dash
                + (
                    f'\r\nContent-Disposition: form-data; name="{_quote(part.name)}"; '
                    f'filename="{_quote(part.filename)}"\r\n'
                    f"Content-Type: {_quote(part.content_type)}\r\n\r\n"
                ).encode()
            )
            parts.extend(part.data)
            parts.append(b"\r\n")
        parts.append(dash + b"--\r\n")
        return f"multipart/form-data; boundary={boundary}", parts


def _quote(value: str) -> str:
    """As browsers escape names in a form's headers (the HTML standard's rule)."""
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
