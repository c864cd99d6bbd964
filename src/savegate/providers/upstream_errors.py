"""Upstream failures → `ProviderError`, keeping the upstream's own words where it gave them."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import orjson

from savegate.core.errors import ProviderError

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


def from_status(
    provider: str, status: int, raw: bytes, headers: Mapping[str, str]
) -> ProviderError:
    fields = _error_fields(raw)
    upstream_message = str(fields.get("message") or raw[:500].decode("utf-8", "replace")).strip()
    code = fields.get("code") or ("rate_limit_exceeded" if status == 429 else None)
    param = fields.get("param")
    wait = retry_after(headers)
    if status in _PASS_THROUGH:
        return ProviderError(
            upstream_message or f"upstream returned HTTP {status}",
            status=status,
            type=str(fields.get("type") or "invalid_request_error"),
            code=str(code) if code is not None else None,
            param=str(param) if param is not None else None,
            retryable=status == 429,
            upstream_status=status,
            raw_body=raw,
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
            raw_body=raw,
            retry_after=wait,
        )
    # Anthropic's 529 "overloaded" is a 503 to OpenAI clients.
    client_status = 503 if status == 529 else status if status >= 500 else 502
    return ProviderError(
        f"The upstream provider '{provider}' failed with HTTP {status}: {upstream_message}",
        status=client_status,
        retryable=status >= 500 or status == 408,
        upstream_status=status,
        raw_body=raw,
        retry_after=wait,
    )


def from_payload(provider: str, raw: bytes) -> ProviderError:
    """An error object the upstream sent inside a stream."""
    fields = _error_fields(raw)
    return ProviderError(
        str(fields.get("message") or f"The upstream provider '{provider}' reported an error."),
        type=str(fields.get("type") or "server_error"),
        code=str(fields["code"]) if fields.get("code") is not None else "upstream_error",
        raw_body=raw,
    )


def from_transport(provider: str, exc: BaseException, *, mid_stream: bool) -> ProviderError:
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
