"""`GET /v1/models` and `GET /v1/models/{id}`."""

from __future__ import annotations

from typing import Any

from savegate.api.http import Response, json_response
from savegate.core.errors import ModelNotFound
from savegate.routing.router import ModelEntry, ModelRouter


def _model(model_id: str, entry: ModelEntry, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": entry.owned_by}


def list_models(router: ModelRouter, created: int) -> Response:
    data = [_model(entry.pattern, entry, created) for entry in router.listed()]
    return json_response({"object": "list", "data": data})


def retrieve_model(router: ModelRouter, model_id: str, created: int) -> Response:
    entry = router.find(model_id)
    if entry is None:
        raise ModelNotFound(model_id)
    return json_response(_model(model_id, entry, created))
