"""The route table: which handler answers which method and path, and how it is guarded."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import Enum

from savegate.api import ops
from savegate.api.admin import handlers as admin
from savegate.api.anthropic.errors import anthropic_error_response
from savegate.api.anthropic.messages import count_tokens, create_message
from savegate.api.http import HttpRequest, JsonResponse, Response, error_response, json_response
from savegate.api.openai import batches, files, media
from savegate.api.openai.chat import create_chat_completion
from savegate.api.openai.completions import create_completion, create_embedding
from savegate.api.openai.models import list_models, retrieve_model
from savegate.api.openapi import serve as openapi_document
from savegate.api.responses.handlers import create_response, delete_response, get_response
from savegate.app import Gateway
from savegate.config import ServerConfig
from savegate.core.errors import GatewayError, NotFound
from savegate.core.keys import ApiKey
from savegate.observe.registry import EXPOSITION_TYPE
from savegate.web import static as web

Handler = Callable[[Gateway, HttpRequest, ApiKey], Awaitable[Response]]
PublicHandler = Callable[[Gateway, HttpRequest], Awaitable[Response]]


class Access(Enum):
    PUBLIC = "public"
    KEY = "key"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Endpoint:
    handler: Handler | PublicHandler
    access: Access = Access.KEY
    reads_body: bool = False
    streams_body: bool = False  # the handler reads the body as it arrives (uploads)
    errors: Callable[[GatewayError], JsonResponse] = error_response
    # A multipart upload, read as it arrives (`request.form`) up to this many bytes.
    upload_limit: Callable[[ServerConfig], int] | None = None
    label: str = ""  # the path (pattern) the metrics and traces name it by


async def _health(gateway: Gateway, request: HttpRequest) -> Response:
    if gateway.draining:
        return json_response({"status": "draining"}, status=503)
    return json_response({"status": "ok"})


async def _metrics(gateway: Gateway, request: HttpRequest, key: ApiKey | None = None) -> Response:
    observer = gateway.observer
    if observer is None or observer.metrics is None:
        raise NotFound("Metrics are disabled (metrics.enabled: false).")
    return JsonResponse(observer.exposition(), content_type=EXPOSITION_TYPE)


def _post(handler: Handler) -> Endpoint:
    return Endpoint(handler, reads_body=True)


def _audio_limit(server: ServerConfig) -> int:
    return server.max_audio_body_bytes


def _image_limit(server: ServerConfig) -> int:
    return server.max_image_body_bytes


def _anthropic(handler: Handler) -> Endpoint:
    return Endpoint(handler, reads_body=True, errors=anthropic_error_response)


EXACT: dict[tuple[str, str], Endpoint] = {
    ("GET", "/health"): Endpoint(_health, Access.PUBLIC),
    ("GET", "/health/live"): Endpoint(ops.live, Access.PUBLIC),
    ("GET", "/health/ready"): Endpoint(ops.ready, Access.PUBLIC),
    ("GET", "/openapi.json"): Endpoint(openapi_document, Access.PUBLIC),
    ("GET", "/"): Endpoint(web.page("playground.html"), Access.PUBLIC),
    ("GET", "/playground"): Endpoint(web.page("playground.html"), Access.PUBLIC),
    ("GET", "/dashboard"): Endpoint(web.page("dashboard.html"), Access.PUBLIC),
    ("POST", "/v1/chat/completions"): _post(lambda g, r, k: create_chat_completion(r, k, g.chat)),
    ("POST", "/v1/completions"): _post(lambda g, r, k: create_completion(r, k, g.completions)),
    ("POST", "/v1/embeddings"): _post(lambda g, r, k: create_embedding(r, k, g.embeddings)),
    ("POST", "/v1/responses"): _post(lambda g, r, k: create_response(r, k, g.responses)),
    ("GET", "/v1/models"): Endpoint(lambda g, r, k: list_models(g.router, k, g.started_at)),
    ("POST", "/v1/images/generations"): _post(lambda g, r, k: media.generate_images(r, k, g.media)),
    ("POST", "/v1/audio/speech"): _post(lambda g, r, k: media.create_speech(r, k, g.media)),
    ("POST", "/v1/moderations"): _post(lambda g, r, k: media.create_moderation(r, k, g.media)),
    # Multipart uploads, with their own limits.
    **{
        ("POST", path): Endpoint(
            lambda g, r, k, handler=handler: handler(r, k, g.media), upload_limit=limit
        )
        for path, handler, limit in (
            ("/v1/audio/transcriptions", media.create_transcription, _audio_limit),
            ("/v1/audio/translations", media.create_translation, _audio_limit),
            ("/v1/images/edits", media.edit_images, _image_limit),
            ("/v1/images/variations", media.create_image_variation, _image_limit),
        )
    },
    ("POST", "/v1/files"): Endpoint(
        lambda g, r, k: files.create_file(r, k, g.files), streams_body=True
    ),
    ("GET", "/v1/files"): Endpoint(lambda g, r, k: files.list_files(r, k, g.files)),
    ("POST", "/v1/batches"): _post(lambda g, r, k: batches.create_batch(r, k, g.batches)),
    ("GET", "/v1/batches"): Endpoint(lambda g, r, k: batches.list_batches(r, k, g.batches)),
    # The Anthropic SDK given our `/v1` base URL calls `/v1/v1/messages`: accept both.
    **{
        ("POST", prefix + path): _anthropic(handler)
        for prefix in ("/v1", "/v1/v1")
        for path, handler in (
            ("/messages", lambda g, r, k: create_message(r, k, g.chat)),
            ("/messages/count_tokens", lambda g, r, k: count_tokens(r, k)),
        )
    },
    ("GET", "/admin/keys"): Endpoint(admin.list_keys, Access.ADMIN),
    ("POST", "/admin/keys"): Endpoint(admin.create_key, Access.ADMIN, reads_body=True),
    ("GET", "/admin/usage"): Endpoint(admin.usage_report, Access.ADMIN),
    ("GET", "/admin/usage/requests"): Endpoint(admin.usage_requests, Access.ADMIN),
    ("GET", "/admin/spend"): Endpoint(admin.spend_summary, Access.ADMIN),
    ("POST", "/admin/reload"): Endpoint(ops.reload, Access.ADMIN),
    ("GET", "/metrics"): Endpoint(_metrics, Access.ADMIN),
}

PREFIXED: list[tuple[str, str, Endpoint]] = [
    (
        "GET",
        "/v1/models/",
        Endpoint(
            lambda g, r, k: retrieve_model(
                g.router, k, r.path.removeprefix("/v1/models/"), g.started_at
            )
        ),
    ),
    ("GET", "/v1/responses/", Endpoint(lambda g, r, k: get_response(r, k, g.responses))),
    ("DELETE", "/v1/responses/", Endpoint(lambda g, r, k: delete_response(r, k, g.responses))),
    ("GET", "/v1/files/", Endpoint(lambda g, r, k: files.retrieve_file(r, k, g.files))),
    ("DELETE", "/v1/files/", Endpoint(lambda g, r, k: files.delete_file(r, k, g.files))),
    ("GET", "/v1/batches/", Endpoint(lambda g, r, k: batches.retrieve_batch(r, k, g.batches))),
    ("POST", "/v1/batches/", _post(lambda g, r, k: batches.cancel_batch(r, k, g.batches))),
    ("GET", "/admin/keys/", Endpoint(admin.get_key, Access.ADMIN)),
    ("PATCH", "/admin/keys/", Endpoint(admin.update_key, Access.ADMIN, reads_body=True)),
    ("DELETE", "/admin/keys/", Endpoint(admin.revoke_key, Access.ADMIN)),
    ("GET", web.PREFIX, Endpoint(web.static_file, Access.PUBLIC)),
]


EXACT = {route: replace(endpoint, label=route[1]) for route, endpoint in EXACT.items()}
PREFIXED = [
    (method, prefix, replace(endpoint, label=prefix + "*")) for method, prefix, endpoint in PREFIXED
]
# What the separate metrics port (`metrics.port`) serves, without a key.
METRICS_PORT = {("GET", "/metrics"): Endpoint(_metrics, Access.PUBLIC, label="/metrics")}


def find(method: str, path: str) -> Endpoint | None:
    endpoint = EXACT.get((method, path))
    if endpoint is not None:
        return endpoint
    for route_method, prefix, candidate in PREFIXED:
        if method == route_method and path.startswith(prefix) and len(path) > len(prefix):
            return candidate
    return None
