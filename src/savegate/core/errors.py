"""The gateway's error hierarchy. Every failure a client can see is one of these.

The HTTP layer turns them into OpenAI-style bodies (`api/errors.py`); nothing else
formats an error for the wire.
"""

from __future__ import annotations

import asyncio


class GatewayError(Exception):
    """A failure with an HTTP status and an OpenAI error type and code."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, str | None]]:
        """OpenAI's error object."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "invalid_request_error"
    code = "permission_denied"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model `{model}` does not exist or you do not have access to it.",
            param="model",
        )


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class ShuttingDown(GatewayError):
    """The server stopped before this request was done (its shutdown grace ran out)."""

    status = 503
    code = "server_shutting_down"

    def __init__(self) -> None:
        super().__init__(
            "The server is shutting down and cut this answer short. Please retry the request."
        )


class Overloaded(GatewayError):
    """This process already serves as many requests as `server.max_inflight` allows."""

    status = 503
    code = "server_overloaded"

    def __init__(self) -> None:
        super().__init__(
            "The server is overloaded. Please retry the request shortly.",
            headers={"retry-after": "1"},
        )


def interruption(cancelled: BaseException) -> GatewayError | None:
    """Why the gateway itself cancelled a task, if it did: the error it cancelled it with
    (`task.cancel(msg=error)`). None for any other cancellation (a client gone)."""
    if isinstance(cancelled, asyncio.CancelledError) and cancelled.args:
        reason = cancelled.args[0]
        if isinstance(reason, GatewayError):
            return reason
    return None


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class ProviderError(GatewayError):
    """A provider failed. Carries what a router needs to decide on a retry."""

    status = 502
    type = "server_error"
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        upstream_status: int | None = None,
        raw_body: bytes = b"",
        retry_after: float | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, status=status, type=type, code=code, param=param)
        self.upstream_status = upstream_status
        self.raw_body = raw_body
        self.retry_after = retry_after
        self.retryable = retryable
        if retry_after is not None:
            self.headers["retry-after"] = str(max(0, round(retry_after)))
