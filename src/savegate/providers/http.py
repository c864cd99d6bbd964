"""HTTP transport shared by every remote provider: one pool of keep-alive connections
per provider (shared by all its keys), through the provider's proxy if it has one,
failures translated into `ProviderError` at the boundary, and the upstream keys masked
in whatever comes back."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Mapping, Sequence

from savegate.config import ProviderConfig
from savegate.core.errors import ProviderError
from savegate.core.propagation import UPSTREAM_TRACEPARENT
from savegate.core.redact import Redactor
from savegate.httpclient import ConnectionPool, HttpError, ProxyError, Response
from savegate.providers import upstream_errors as errors

log = logging.getLogger(__name__)

Headers = Mapping[str, str]

__all__ = ["Headers", "HttpUpstream", "Response"]


class HttpUpstream:
    def __init__(self, name: str, config: ProviderConfig, redactor: Redactor) -> None:
        self.name = name
        self._redactor = redactor
        self.base_url = config.base_url.rstrip("/")
        self.extra_headers = dict(config.headers)
        context = ssl.create_default_context(cafile=config.ca_bundle) if config.ca_bundle else None
        self._pool = ConnectionPool(
            self.base_url,
            limit=config.max_connections,
            connect_timeout=config.connect_timeout_seconds,
            read_timeout=config.timeout_seconds,
            proxy=config.proxy_server(),
            context=context,
        )

    async def open(
        self,
        path: str,
        body: bytes | Sequence[bytes | memoryview],
        headers: dict[str, str],
        observe: Callable[[Headers], None] | None = None,
        method: str = "POST",
    ) -> Response:
        """POST (or `method`) to the base URL + `path`; the response comes back with its
        body unread.

        An error status is read, closed and raised as ProviderError here."""
        headers = {**headers, **self.extra_headers}
        traceparent = UPSTREAM_TRACEPARENT.get()
        if traceparent is not None:
            headers["traceparent"] = traceparent
        try:
            response = await self._pool.post(path, headers, body, method)
        except HttpError as exc:
            if isinstance(exc, ProxyError):
                log.warning("provider %s: proxy %s: %s", self.name, exc.proxy, exc)
            raise errors.from_transport(self.name, exc, mid_stream=False) from exc
        if observe is not None:
            observe(response.headers)
        if response.status >= 400:
            try:
                raw = await response.read()
            except HttpError:
                raw = b""
            finally:
                response.release()
            raise errors.from_status(
                self.name, response.status, raw, response.headers, self._redactor
            )
        return response

    def payload_error(self, raw: bytes) -> ProviderError:
        """The error object the upstream sent inside a stream."""
        return errors.from_payload(self.name, raw, self._redactor)

    async def read(self, response: Response) -> bytes:
        try:
            return self._redactor.body(await response.read())
        except HttpError as exc:
            raise errors.from_transport(self.name, exc, mid_stream=False) from exc
        finally:
            response.release()

    async def next_read(self, response: Response) -> bytes:
        """What arrived of a streamed body since the last call; b"" at its end. A broken
        connection raises. The reader releases the response when it is done.

        Each read is masked on its own: a key cut in two by a read boundary is not."""
        try:
            return self._redactor.body(await response.next_body())
        except HttpError as exc:
            raise errors.from_transport(self.name, exc, mid_stream=True) from exc

    async def aclose(self) -> None:
        await self._pool.aclose()
