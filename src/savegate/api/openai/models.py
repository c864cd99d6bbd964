"""`GET /v1/models` and `GET /v1/models/{id}`: only what the calling key may use."""

from __future__ import annotations

from typing import Any

from savegate.api.http import Response, json_response
from savegate.core.errors import ModelNotFound
from savegate.core.keys import ApiKey
from savegate.routing.router import ModelGroup, ModelRouter


def _model(model_id: str, entry: ModelGroup, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": entry.owned_by}


async def list_models(router: ModelRouter, key: ApiKey, created: int) -> Response:
    data = [
        _model(entry.pattern, entry, created)
        for entry in router.listed()
        if key.allows(entry.pattern)
    ]
    return json_response({"object": "list", "data": data})


async def retrieve_model(router: ModelRouter, key: ApiKey, model_id: str, created: int) -> Response:
    entry = router.find(model_id)
    if entry is None or not key.allows(model_id):
        raise ModelNotFound(model_id)
    return json_response(_model(model_id, entry, created))
