"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp server, …).

The upstream already speaks our dialect, so requests go out as the client sent them
(only `model` may be renamed) and stream events are relayed as the upstream's own bytes,
never decoded and re-encoded.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import httpx
import orjson

from savegate.config import ProviderConfig
from savegate.core.errors import ProviderError
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers.openai_compat import errors
from savegate.wire.sse import SSEDecoder

_DONE = b"[DONE]"


class OpenAICompatProvider:
    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._keys = itertools.cycle(config.api_keys() or [None])
        self._extra_headers = dict(config.headers)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds),
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_connections,
            ),
        )

    def _request(self, request: ChatRequest, model: str) -> httpx.Request:
        body = (
            request.raw
            if model == request.model
            else orjson.dumps({**request.body, "model": model})
        )
        headers = {"content-type": "application/json", **self._extra_headers}
        key = next(self._keys)
        if key:
            headers["authorization"] = f"Bearer {key}"
        return self._client.build_request("POST", self._url, content=body, headers=headers)

    async def _send(self, request: ChatRequest, model: str) -> httpx.Response:
        try:
            response = await self._client.send(self._request(request, model), stream=True)
        except httpx.HTTPError as exc:
            raise errors.from_transport(self.name, exc, mid_stream=False) from exc
        if response.status_code >= 400:
            try:
                raw = await response.aread()
            except httpx.HTTPError:
                raw = b""
            finally:
                await response.aclose()
            raise errors.from_status(self.name, response.status_code, raw, response.headers)
        return response

    async def complete(self, request: ChatRequest, model: str) -> Json:
        response = await self._send(request, model)
        try:
            raw = await response.aread()
        except httpx.HTTPError as exc:
            raise errors.from_transport(self.name, exc, mid_stream=False) from exc
        finally:
            await response.aclose()
        return Json(raw=raw)

    async def stream(self, request: ChatRequest, model: str) -> UpstreamStream:
        return UpstreamStream(self.name, await self._send(request, model))

    async def aclose(self) -> None:
        await self._client.aclose()


class UpstreamStream:
    """The upstream's `data:` payloads as they arrive; `[DONE]` ends it.

    An error event, a broken connection or an end without `[DONE]` raises ProviderError:
    a truncated answer must never look complete.
    """

    def __init__(self, provider: str, response: httpx.Response) -> None:
        self._provider = provider
        self._response = response

    def __aiter__(self) -> AsyncIterator[Json]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[Json]:
        decoder = SSEDecoder()
        try:
            async for raw in self._response.aiter_raw():
                for event in decoder.decode(raw):
                    if event.data == _DONE:
                        return
                    if event.event == "error" or event.data.startswith(b'{"error"'):
                        raise errors.from_payload(self._provider, event.data)
                    if event.data:
                        yield Json(raw=event.data)
        except httpx.HTTPError as exc:
            raise errors.from_transport(self._provider, exc, mid_stream=True) from exc
        finally:
            await self._response.aclose()
        for event in decoder.flush():
            if event.data == _DONE:
                return
        raise ProviderError(
            f"The upstream provider '{self._provider}' ended the stream without [DONE].",
            code="upstream_incomplete",
        )

    async def aclose(self) -> None:
        await self._response.aclose()
