"""HTTP transport shared by every remote provider: one pool of keep-alive connections
per provider (shared by all its keys), and failures translated into `ProviderError` at
the boundary.

aiohttp rather than httpx: under concurrency httpx's pool bookkeeping cost more than
everything else the gateway does per request (measured with py-spy, see bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping

import aiohttp

from savegate.config import ProviderConfig
from savegate.providers import upstream_errors as errors
from savegate.wire.sse import Event, SSEDecoder

Headers = Mapping[str, str]
Response = aiohttp.ClientResponse
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


class HttpUpstream:
    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self.base_url = config.base_url.rstrip("/")
        self.extra_headers = dict(config.headers)
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=config.connect_timeout_seconds,
            sock_read=config.timeout_seconds,
        )
        self._limit = config.max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: a session belongs to the running event loop.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limit, limit_per_host=self._limit, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=True
            )
        return self._session

    async def open(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        observe: Callable[[Headers], None] | None = None,
    ) -> Response:
        """Send a request and return the response with its body still unread.

        An error status is read, closed and raised as ProviderError here."""
        try:
            response = await self._client().post(
                url, data=body, headers={**headers, **self.extra_headers}
            )
        except TRANSPORT_ERRORS as exc:
            raise errors.from_transport(self.name, exc, mid_stream=False) from exc
        if observe is not None:
            observe(response.headers)
        if response.status >= 400:
            try:
                raw = await response.read()
            except TRANSPORT_ERRORS:
                raw = b""
            finally:
                response.release()
            raise errors.from_status(self.name, response.status, raw, response.headers)
        return response

    async def read(self, response: Response) -> bytes:
        try:
            return await response.read()
        except TRANSPORT_ERRORS as exc:
            raise errors.from_transport(self.name, exc, mid_stream=False) from exc
        finally:
            response.release()

    async def reads(self, response: Response) -> AsyncIterator[bytes]:
        """The response body as it arrives, read by read; a broken connection raises."""
        try:
            async for raw in response.content.iter_any():
                yield raw
        except TRANSPORT_ERRORS as exc:
            raise errors.from_transport(self.name, exc, mid_stream=True) from exc
        finally:
            response.release()

    async def event_batches(self, response: Response) -> AsyncIterator[list[Event]]:
        """The response's SSE events, batched by the read they completed in."""
        decoder = SSEDecoder()
        async with contextlib.aclosing(self.reads(response)) as reads:
            async for raw in reads:
                events = decoder.decode(raw)
                if events:
                    yield events
        events = decoder.flush()
        if events:
            yield events

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
