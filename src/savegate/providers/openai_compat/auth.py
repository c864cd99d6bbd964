"""The headers an OpenAI-compatible upstream is called with."""

from __future__ import annotations


def request_headers(key: str | None, content_type: str | None = None) -> dict[str, str]:
    """`authorization: Bearer <key>` when there is a key, and the body's content type."""
    headers = {"content-type": content_type} if content_type else {}
    if key:
        headers["authorization"] = f"Bearer {key}"
    return headers
