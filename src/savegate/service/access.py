"""Which route serves a request, and whether the caller's key may use it."""

from __future__ import annotations

from savegate.core.errors import PermissionDenied
from savegate.core.request import ChatRequest
from savegate.routing.router import ModelRouter, Route


def route_for(router: ModelRouter, request: ChatRequest) -> Route:
    model = request.model
    if not request.context.key.allows(model):
        raise PermissionDenied(
            f"This API key is not allowed to use the model `{model}`.",
            param="model",
            code="model_not_allowed",
        )
    return router.resolve(model)
