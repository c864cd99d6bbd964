"""Whether the caller's key may use the model it asked for."""

from __future__ import annotations

from savegate.core.errors import PermissionDenied
from savegate.core.request import ChatRequest


def check_model_access(request: ChatRequest) -> None:
    model = request.model
    if not request.context.key.allows(model):
        raise PermissionDenied(
            f"This API key is not allowed to use the model `{model}`.",
            param="model",
            code="model_not_allowed",
        )
