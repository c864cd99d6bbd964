"""Serves the files under `static/` from the installed package.

Only the files found there at first use are served, by exact name, so no path can reach
outside the folder. Responses revalidate with an ETag (cheap 304s, never a stale page after
an upgrade) and carry a content security policy that keeps scripts to our own files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable

from savegate.api.http import HttpRequest, JsonResponse, Response
from savegate.app import Gateway
from savegate.core.errors import NotFound

PREFIX = "/static/"
_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".md": b"text/markdown; charset=utf-8",
}
_HEADERS = [
    (b"cache-control", b"no-cache"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        # Images from https: the URLs image models answer with, shown by the playground.
        b"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; "
        b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
]


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: bytes
    etag: str


def _walk(folder: Traversable, prefix: str = "") -> dict[str, Asset]:
    found: dict[str, Asset] = {}
    for entry in folder.iterdir():
        name = prefix + entry.name
        if entry.is_dir():
            found.update(_walk(entry, name + "/"))
            continue
        content_type = _TYPES.get("." + entry.name.rpartition(".")[2])
        if content_type is not None:
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            found[name] = Asset(body, content_type, etag)
    return found


@cache
def assets() -> dict[str, Asset]:
    """Every servable file under `static/`, by its path there."""
    return _walk(files("savegate.web") / "static")


def serve(request: HttpRequest, name: str) -> Response:
    asset = assets().get(name)
    if asset is None:
        raise NotFound(f"Invalid URL ({request.method} {request.path})")
    headers = [(b"etag", asset.etag.encode()), *_HEADERS]
    if request.headers.get("if-none-match") == asset.etag:
        return JsonResponse(b"", 304, headers, asset.content_type)
    return JsonResponse(asset.body, 200, headers, asset.content_type)


def page(name: str) -> Callable[[Gateway, HttpRequest], Awaitable[Response]]:
    """A public handler that answers with one file (a page at a path of its own)."""

    async def handler(gateway: Gateway, request: HttpRequest) -> Response:
        return serve(request, name)

    return handler


async def static_file(gateway: Gateway, request: HttpRequest) -> Response:
    return serve(request, request.path.removeprefix(PREFIX))
