"""The HTTP surface: route → authenticate → read the body → handler → respond.

Every failure becomes an error body in the endpoint's dialect with the right status;
nothing a client sends can produce a traceback or stop the server.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from savegate.api import routes
from savegate.api.forms import read_form
from savegate.api.http import (
    ClientGone,
    DisconnectGuard,
    HttpRequest,
    JsonResponse,
    Receive,
    Scope,
    Send,
    StreamResponse,
    error_response,
    send_response,
)
from savegate.api.routes import Access
from savegate.app import Gateway
from savegate.config import ConfigError
from savegate.core.errors import (
    GatewayError,
    NotFound,
    Overloaded,
    PermissionDenied,
    ShuttingDown,
    interruption,
)
from savegate.core.ids import request_id
from savegate.core.keys import ApiKey
from savegate.keys.auth import bearer_token
from savegate.observe import access_log

log = logging.getLogger(__name__)

SETTLE_SECONDS = 2.0  # at shutdown, for interrupted requests to finish their accounting
# Probes and scrapes: never shed (they must see an overloaded process as it is), and
# not in the access log.
UNSHED = ("/health", "/metrics")


class ApiApp:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._inflight: set[asyncio.Task[Any]] = set()
        gateway.live_requests = self._inflight.__len__  # batches yield to live traffic
        self._streams = 0  # of the requests in flight, those relaying a stream
        self._observer = gateway.observer
        self._metrics_port = gateway.config.metrics.port
        if self._observer is not None and self._observer.metrics is not None:
            self._observer.metrics.in_flight = lambda: (len(self._inflight), self._streams)

    def drain(self, grace: float) -> asyncio.TimerHandle:
        """Shutdown began: report it, and in `grace` seconds cut what is still running."""
        self.gateway.draining = True
        return asyncio.get_running_loop().call_later(grace, self.interrupt, ShuttingDown())

    def interrupt(self, error: GatewayError) -> None:
        """End every request still running with `error`: JSON requests answer it, streams
        end with it in their dialect, and usage rows record it."""
        for task in list(self._inflight):
            task.cancel(msg=error)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = HttpRequest(scope, receive, request_id())
        endpoint = self._find(request, scope)
        errors = endpoint.errors if endpoint is not None else error_response
        if self._overloaded(request):
            await self._shed(request, send, errors)
            return
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        guard: DisconnectGuard | None = None
        streaming = False
        outcome = request.outcome
        outcome.endpoint = endpoint.label if endpoint is not None else "unmatched"
        observer = self._observer
        if observer is not None:
            observer.request_started(outcome, request.header("traceparent"))
        try:
            try:
                if endpoint is None:
                    raise NotFound(f"Invalid URL ({request.method} {request.path})")
                key = None
                if endpoint.access is not Access.PUBLIC:
                    key = await self._authenticate(request, endpoint.access)
                    outcome.key_id = key.id
                if endpoint.reads_body:
                    await request.read_body(self.gateway.config.server.max_body_bytes)
                elif endpoint.upload_limit is not None:
                    limit = endpoint.upload_limit(self.gateway.config.server)
                    request.form = await read_form(request, limit)
                if key is not None:
                    request.authenticated(key)
                if not endpoint.streams_body:  # else the handler reads it, disconnects too
                    guard = DisconnectGuard(scope, receive)
                if key is None:
                    response = await endpoint.handler(self.gateway, request)  # type: ignore[call-arg]
                else:
                    response = await endpoint.handler(self.gateway, request, key)  # type: ignore[call-arg]
            except GatewayError as exc:
                response = errors(exc)
                outcome.error_type = exc.code or exc.type
            except ClientGone:
                outcome.status = 499
                return
            except asyncio.CancelledError as exc:
                cut = interruption(exc)
                if cut is None:
                    raise
                task.uncancel()
                response = errors(cut)
                outcome.error_type = cut.code or cut.type
            except Exception:
                log.exception("request %s failed", request.request_id)
                response = errors(GatewayError("The server had an error processing your request."))
                outcome.error_type = "server_error"
            if guard is None:
                guard = DisconnectGuard(scope, receive)
            streaming = isinstance(response, StreamResponse)
            if isinstance(response, JsonResponse):
                outcome.status = response.status  # a stream's own end is its attempt's
            elif not streaming and not outcome.status:
                outcome.status = 200  # a file's bytes, or an upstream's relayed as they come
            self._streams += streaming
            try:
                await send_response(send, response, self._headers(request), guard)
            finally:
                self._streams -= streaming
        except asyncio.CancelledError:
            if guard is None or not guard.disconnected:
                raise
            task.uncancel()
            outcome.status = 499
        except OSError:
            outcome.status = 499  # the client's socket went away while we wrote to it
        finally:
            self._inflight.discard(task)
            if guard is not None:
                guard.close()
            if not request.path.startswith(UNSHED):  # probes every few seconds: no lines
                access_log.write(
                    request_id=request.request_id,
                    method=request.method,
                    path=request.path,
                    status=outcome.status or 499,  # none yet: the client left
                    started=request.started,
                    stream=streaming,
                    error=outcome.error_type,
                    context=request.context_if_any,
                )
            if observer is not None:
                observer.request_ended(outcome, request.method)

    def _overloaded(self, request: HttpRequest) -> bool:
        limit = self.gateway.config.server.max_inflight
        return (
            limit is not None
            and len(self._inflight) >= limit
            and not request.path.startswith(UNSHED)
        )

    async def _shed(
        self, request: HttpRequest, send: Send, errors: Callable[[GatewayError], JsonResponse]
    ) -> None:
        """Refuse at once, before reading the body: queueing would only add to the load."""
        error = Overloaded()
        guard = DisconnectGuard(request.scope, request.receive)
        try:
            await send_response(send, errors(error), self._headers(request), guard)
        except OSError:
            pass
        finally:
            guard.close()
        access_log.write(
            request_id=request.request_id,
            method=request.method,
            path=request.path,
            status=error.status,
            started=request.started,
            stream=False,
            error=error.code,
            context=None,
        )

    def _find(self, request: HttpRequest, scope: Scope) -> routes.Endpoint | None:
        """The endpoint: from the route table, or on the metrics port its one route."""
        port = self._metrics_port
        if port is not None and scope.get("server", (None, None))[1] == port:
            return routes.METRICS_PORT.get((request.method, request.path))
        return routes.find(request.method, request.path)

    async def _authenticate(self, request: HttpRequest, access: Access) -> ApiKey:
        headers = request.headers
        secret = bearer_token(headers.get("authorization")) or headers.get("x-api-key")
        key = await self.gateway.auth.authenticate(secret)
        if access is Access.ADMIN and not key.is_admin:
            raise PermissionDenied("This endpoint needs an admin key.", code="admin_key_required")
        return key

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
                self._watch_reloads()
                self.gateway.readiness.started = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._inflight:  # interrupted requests still writing their usage rows
                    await asyncio.wait(self._inflight, timeout=SETTLE_SECONDS)
                if self.gateway.reloader is not None:
                    await self.gateway.reloader.aclose()
                await self.gateway.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _watch_reloads(self) -> None:
        """SIGHUP reloads the config (with several workers the supervisor forwards it)."""
        reloader = self.gateway.reloader
        if reloader is None:
            return
        reloader.watch(lambda: list(self._inflight))

        def on_hangup() -> None:
            try:
                reloader.reload()
            except ConfigError as exc:
                log.error("config reload refused, the running config stays: %s", exc)

        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_hangup)
