"""The HTTP surface: route → authenticate → read the body → handler → respond.

Every failure becomes an OpenAI-style error body with the right status; nothing a
client sends can produce a traceback or stop the server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from savegate.api.anthropic.errors import anthropic_error_response
from savegate.api.anthropic.messages import count_tokens, create_message
from savegate.api.http import (
    ClientGone,
    DisconnectGuard,
    HttpRequest,
    JsonResponse,
    Receive,
    Response,
    Scope,
    Send,
    error_response,
    json_response,
    send_response,
)
from savegate.api.openai.chat import create_chat_completion
from savegate.api.openai.completions import create_completion, create_embedding
from savegate.api.openai.models import list_models, retrieve_model
from savegate.api.responses.handlers import create_response, delete_response, get_response
from savegate.app import Gateway
from savegate.core.errors import GatewayError, NotFound
from savegate.core.ids import request_id
from savegate.keys.auth import bearer_token
from savegate.keys.model import ApiKey

log = logging.getLogger(__name__)

Handler = Callable[[Gateway, HttpRequest, ApiKey | None], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    handler: Handler
    authenticated: bool = True
    reads_body: bool = False
    errors: Callable[[GatewayError], JsonResponse] = error_response


async def _chat(gateway: Gateway, request: HttpRequest, key: ApiKey | None) -> Response:
    assert key is not None
    return await create_chat_completion(request, key, gateway.chat)


async def _completions(gateway: Gateway, request: HttpRequest, key: ApiKey | None) -> Response:
    assert key is not None
    return await create_completion(request, key, gateway.completions)


async def _embeddings(gateway: Gateway, request: HttpRequest, key: ApiKey | None) -> Response:
    assert key is not None
    return await create_embedding(request, key, gateway.embeddings)


async def _create_response(gateway: Gateway, request: HttpRequest, key: ApiKey | None) -> Response:
    assert key is not None
    return await create_response(request, key, gateway.chat, gateway.responses)


async def _get_response(gateway: Gateway, request: HttpRequest, key: ApiKey | None) -> Response:
    assert key is not None
    return await get_response(request, key, gateway.responses)


async def _delete_response(gateway: Gateway, request: HttpRequest, key: ApiKey | None) -> Response:
    assert key is not None
    return await delete_response(request, key, gateway.responses)


async def _messages(gateway: Gateway, request: HttpRequest, key: ApiKey | None) -> Response:
    assert key is not None
    return await create_message(request, key, gateway.chat)


async def _count_tokens(gateway: Gateway, request: HttpRequest, key: ApiKey | None) -> Response:
    assert key is not None
    return await count_tokens(request, key)


async def _models(gateway: Gateway, request: HttpRequest, key: ApiKey | None) -> Response:
    return list_models(gateway.router, gateway.started_at)


async def _model(gateway: Gateway, request: HttpRequest, key: ApiKey | None) -> Response:
    model_id = request.path.removeprefix("/v1/models/")
    return retrieve_model(gateway.router, model_id, gateway.started_at)


async def _health(gateway: Gateway, request: HttpRequest, key: ApiKey | None) -> Response:
    return json_response({"status": "ok"})


_EXACT: dict[tuple[str, str], Endpoint] = {
    ("POST", "/v1/chat/completions"): Endpoint(_chat, reads_body=True),
    ("POST", "/v1/completions"): Endpoint(_completions, reads_body=True),
    ("POST", "/v1/embeddings"): Endpoint(_embeddings, reads_body=True),
    ("POST", "/v1/responses"): Endpoint(_create_response, reads_body=True),
    ("GET", "/v1/models"): Endpoint(_models),
    ("GET", "/health"): Endpoint(_health, authenticated=False),
    # The Anthropic SDK given our `/v1` base URL calls `/v1/v1/messages`: accept both.
    **{
        ("POST", prefix + "/messages"): Endpoint(
            _messages, reads_body=True, errors=anthropic_error_response
        )
        for prefix in ("/v1", "/v1/v1")
    },
    **{
        ("POST", prefix + "/messages/count_tokens"): Endpoint(
            _count_tokens, reads_body=True, errors=anthropic_error_response
        )
        for prefix in ("/v1", "/v1/v1")
    },
}
_PREFIXED: list[tuple[str, str, Endpoint]] = [
    ("GET", "/v1/models/", Endpoint(_model)),
    ("GET", "/v1/responses/", Endpoint(_get_response)),
    ("DELETE", "/v1/responses/", Endpoint(_delete_response)),
]


def _find(method: str, path: str) -> Endpoint | None:
    endpoint = _EXACT.get((method, path))
    if endpoint is not None:
        return endpoint
    for route_method, prefix, candidate in _PREFIXED:
        if method == route_method and path.startswith(prefix) and len(path) > len(prefix):
            return candidate
    return None


class ApiApp:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = HttpRequest(scope, receive, request_id())
        guard: DisconnectGuard | None = None
        endpoint = _find(request.method, request.path)
        errors = endpoint.errors if endpoint is not None else error_response
        try:
            try:
                if endpoint is None:
                    raise NotFound(f"Invalid URL ({request.method} {request.path})")
                key = await self._authenticate(request) if endpoint.authenticated else None
                if endpoint.reads_body:
                    await request.read_body(self.gateway.config.server.max_body_bytes)
                guard = DisconnectGuard(receive)
                response = await endpoint.handler(self.gateway, request, key)
            except GatewayError as exc:
                response = errors(exc)
            except ClientGone:
                return
            except Exception:
                log.exception("request %s failed", request.request_id)
                response = errors(GatewayError("The server had an error processing your request."))
            if guard is None:
                guard = DisconnectGuard(receive)
            await send_response(send, response, self._headers(request), guard)
        except asyncio.CancelledError:
            if guard is None or not guard.disconnected:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        except OSError:
            pass  # the client's socket went away while we wrote to it
        finally:
            if guard is not None:
                guard.close()

    async def _authenticate(self, request: HttpRequest) -> ApiKey:
        headers = request.headers
        secret = bearer_token(headers.get("authorization")) or headers.get("x-api-key")
        return await self.gateway.auth.authenticate(secret)

    @staticmethod
    def _headers(request: HttpRequest) -> list[tuple[bytes, bytes]]:
        elapsed_ms = int((time.perf_counter() - request.started) * 1000)
        return [
            (b"x-request-id", request.request_id.encode()),
            (b"openai-processing-ms", str(elapsed_ms).encode()),
        ]

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.gateway.start()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.gateway.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
