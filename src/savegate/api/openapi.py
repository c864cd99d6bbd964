"""`GET /openapi.json`: the OpenAPI document of the gateway's own endpoints.

The document is data shipped in the package (`openapi-document/`: the paths, and the
schemas of each dialect), parsed once when the routes load, so a broken document stops
the gateway at start rather than at the first request for it.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import orjson
import yaml

from savegate.api.http import HttpRequest, JsonResponse, Response
from savegate.app import Gateway

PARTS = ("paths.yaml", "openai.yaml", "gateway.yaml", "media.yaml")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it: 5x faster


def _part(name: str) -> dict[str, Any]:
    text = (files("savegate.api") / "openapi-document" / name).read_text(encoding="utf-8")
    loaded: dict[str, Any] = yaml.load(text, Loader=_LOADER)
    return loaded


def load() -> bytes:
    """The document as JSON: the first part, with the others' paths and components merged
    in."""
    document, *others = (_part(name) for name in PARTS)
    for part in others:
        document["paths"].update(part.get("paths", {}))
        for kind, entries in part["components"].items():
            document["components"].setdefault(kind, {}).update(entries)
    return orjson.dumps(document)


DOCUMENT = load()


async def serve(gateway: Gateway, request: HttpRequest) -> Response:
    return JsonResponse(DOCUMENT)
