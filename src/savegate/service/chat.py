"""The chat completion use case: route → call the provider → relay the answer.

(Authentication happens before, in the HTTP layer; limits and usage accounting join
this pipeline here.)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from savegate.core.errors import GatewayError, ProviderError
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers.base import ChatStream
from savegate.routing.router import ModelRouter
from savegate.wire import sse

log = logging.getLogger(__name__)


class ChatService:
    def __init__(self, router: ModelRouter) -> None:
        self._router = router

    async def complete(self, request: ChatRequest) -> Json:
        route = self._router.resolve(request.model)
        return await route.provider.complete(request, route.upstream_model)

    async def stream(self, request: ChatRequest) -> AsyncIterator[bytes]:
        """Open the upstream stream (errors raise here, before any byte is sent) and
        return the SSE body to relay."""
        route = self._router.resolve(request.model)
        upstream = await route.provider.stream(request, route.upstream_model)
        return _relay(upstream, request)


async def _relay(upstream: ChatStream, request: ChatRequest) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream:
            yield sse.data_event(chunk.raw)
        yield sse.DONE
    except ProviderError as exc:
        log.warning("stream %s failed mid-way: %s", request.context.request_id, exc.message)
        yield sse.error_event(exc)
    except GatewayError as exc:
        yield sse.error_event(exc)
    except Exception:
        log.exception("stream %s failed", request.context.request_id)
        yield sse.error_event(GatewayError("The server had an error while streaming the answer."))
    finally:
        await upstream.aclose()
