"""HTTP transport shared by every remote provider: one pool of keep-alive connections
per provider (shared by all its keys), and failures translated into `ProviderError` at
the boundary."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx

from savegate.config import ProviderConfig
from savegate.providers import upstream_errors as errors
from savegate.wire.sse import Event, SSEDecoder


class HttpUpstream:
    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self.base_url = config.base_url.rstrip("/")
        self.extra_headers = dict(config.headers)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds),
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_connections,
            ),
        )

    async def open(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        observe: Callable[[httpx.Headers], None] | None = None,
    ) -> httpx.Response:
        """Send a request and return the response with its body still unread.

        An error status is read, closed and raised as ProviderError here."""
        request = self._client.build_request(
            "POST", url, content=body, headers={**headers, **self.extra_headers}
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise errors.from_transport(self.name, exc, mid_stream=False) from exc
        if observe is not None:
            observe(response.headers)
        if response.status_code >= 400:
            try:
                raw = await response.aread()
            except httpx.HTTPError:
                raw = b""
            finally:
                await response.aclose()
            raise errors.from_status(self.name, response.status_code, raw, response.headers)
        return response

    async def read(self, response: httpx.Response) -> bytes:
        try:
            return await response.aread()
        except httpx.HTTPError as exc:
            raise errors.from_transport(self.name, exc, mid_stream=False) from exc
        finally:
            await response.aclose()

    async def events(self, response: httpx.Response) -> AsyncIterator[Event]:
        """The response's SSE events as they arrive; a broken connection raises."""
        decoder = SSEDecoder()
        try:
            async for raw in response.aiter_raw():
                for event in decoder.decode(raw):
                    yield event
        except httpx.HTTPError as exc:
            raise errors.from_transport(self.name, exc, mid_stream=True) from exc
        finally:
            await response.aclose()
        for event in decoder.flush():
            yield event

    async def aclose(self) -> None:
        await self._client.aclose()
