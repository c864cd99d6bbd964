"""`/v1/batches`: create, list, retrieve, cancel."""

from __future__ import annotations

from savegate.api.http import HttpRequest, Response, json_response, query_params
from savegate.api.openai.listing import limit, page
from savegate.core.errors import NotFound
from savegate.core.keys import ApiKey
from savegate.service.batches import BatchService
from savegate.wire.validate import parse_json_object

MAX_LIST = 100


async def create_batch(request: HttpRequest, key: ApiKey, batches: BatchService) -> Response:
    return json_response(await batches.create(key.id, parse_json_object(request.body)))


async def list_batches(request: HttpRequest, key: ApiKey, batches: BatchService) -> Response:
    query = query_params(request)
    found, more = await batches.browse(key.id, limit(query, 20, MAX_LIST), query.get("after"))
    return json_response(page(found, more))


def _batch_id(request: HttpRequest, tail: str) -> str:
    batch_id, _, rest = request.path.removeprefix("/v1/batches/").partition("/")
    if rest != tail or not batch_id:
        raise NotFound(f"Invalid URL ({request.method} {request.path})")
    return batch_id


async def retrieve_batch(request: HttpRequest, key: ApiKey, batches: BatchService) -> Response:
    return json_response(await batches.get(key.id, _batch_id(request, "")))


async def cancel_batch(request: HttpRequest, key: ApiKey, batches: BatchService) -> Response:
    return json_response(await batches.cancel(key.id, _batch_id(request, "cancel")))
