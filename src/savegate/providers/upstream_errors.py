"""Upstream failures → `ProviderError`, keeping the upstream's own words where it gave them,
less any credential: some proxies echo the request's headers in their errors, and
every upstream failure passes through here on its way to clients, logs and usage rows."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import orjson

from savegate.core.errors import ProviderError
from savegate.core.redact import Redactor
from savegate.httpclient import ProxyError

# Statuses that are the client's fault and mean the same thing coming from us.
_PASS_THROUGH = {400, 403, 404, 409, 413, 422, 429}


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _error_fields(raw: bytes) -> dict[str, object]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return error
    if isinstance(error, str):
        return {"message": error}
    return {}


class _Redacted:
    """An upstream error body and its fields, without the configured secrets or any
    credential the body names (masked in every field once seen in one)."""

    def __init__(self, raw: bytes, redactor: Redactor) -> None:
        text = raw.decode("utf-8", "replace")
        self._redactor = redactor.learning(text)
        clean = self._redactor.text(text)
        self.raw = raw if clean == text else clean.encode()
        self._fields = _error_fields(self.raw)

    def field(self, name: str) -> str | None:
        value = self._fields.get(name)
        return None if value is None else self._redactor.text(str(value))

    def message(self) -> str:
        return (self.field("message") or self.raw[:500].decode("utf-8", "replace")).strip()


def from_status(
    provider: str, status: int, raw: bytes, headers: Mapping[str, str], redactor: Redactor
) -> ProviderError:
    body = _Redacted(raw, redactor)
    upstream_message = body.message()
    code = body.field("code") or ("rate_limit_exceeded" if status == 429 else None)
    wait = retry_after(headers)
    if status in _PASS_THROUGH:
        return ProviderError(
            upstream_message or f"upstream returned HTTP {status}",
            status=status,
            type=body.field("type") or "invalid_request_error",
            code=code,
            param=body.field("param"),
            retryable=status == 429,
            upstream_status=status,
            raw_body=body.raw,
            retry_after=wait,
        )
    if status == 401:
        # Our upstream credentials were refused: not the client's key, so not a 401 to them.
        return ProviderError(
            f"The upstream provider '{provider}' rejected the gateway's credentials.",
            status=502,
            code="upstream_auth_error",
            retryable=True,
            upstream_status=status,
            raw_body=body.raw,
            retry_after=wait,
        )
    # Anthropic's 529 "overloaded" is a 503 to OpenAI clients.
    client_status = 503 if status == 529 else status if status >= 500 else 502
    return ProviderError(
        f"The upstream provider '{provider}' failed with HTTP {status}: {upstream_message}",
        status=client_status,
        retryable=status >= 500 or status == 408,
        upstream_status=status,
        raw_body=body.raw,
        retry_after=wait,
    )


def from_payload(provider: str, raw: bytes, redactor: Redactor) -> ProviderError:
    """An error object the upstream sent inside a stream."""
    body = _Redacted(raw, redactor)
    return ProviderError(
        body.field("message") or f"The upstream provider '{provider}' reported an error.",
        type=body.field("type") or "server_error",
        code=body.field("code") or "upstream_error",
        raw_body=body.raw,
    )


def from_transport(provider: str, exc: BaseException, *, mid_stream: bool) -> ProviderError:
    if isinstance(exc, ProxyError) and not mid_stream:
        refused = exc.status in (401, 407)
        return ProviderError(
            f"Could not reach the upstream provider '{provider}': {exc}.",
            status=502,
            code="upstream_proxy_auth_error" if refused else "upstream_proxy_error",
            retryable=True,
        )
    if isinstance(exc, TimeoutError):
        message = f"The upstream provider '{provider}' timed out"
        status, code = 504, "upstream_timeout"
    else:
        message = f"Could not reach the upstream provider '{provider}'"
        status, code = 502, "upstream_unavailable"
    if mid_stream:
        message = f"The connection to the upstream provider '{provider}' broke mid-stream"
    return ProviderError(
        f"{message} ({type(exc).__name__}).",
        status=status,
        code=code,
        retryable=not mid_stream,
    )
