"""Our errors in Anthropic's shape, for clients of `/v1/messages`."""

from __future__ import annotations

import orjson

from savegate.api.http import JsonResponse, encode_headers
from savegate.core.errors import GatewayError, ProviderError

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}

_ANTHROPIC_TYPES = {*_TYPES.values(), "api_error"}


def error_type(error: GatewayError) -> str:
    if isinstance(error, ProviderError) and error.type in _ANTHROPIC_TYPES:
        return error.type  # relayed from an Anthropic upstream: already Anthropic's word
    return _TYPES.get(error.status, "invalid_request_error" if error.status < 500 else "api_error")


def error_body(error: GatewayError) -> bytes:
    return orjson.dumps(
        {"type": "error", "error": {"type": error_type(error), "message": error.message}}
    )


def anthropic_error_response(error: GatewayError) -> JsonResponse:
    return JsonResponse(error_body(error), error.status, encode_headers(error.headers))
