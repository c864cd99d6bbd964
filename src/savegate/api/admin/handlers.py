"""The admin API under `/admin` (admin keys only): keys and usage."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from pydantic import ValidationError

from savegate.api.http import HttpRequest, Response, json_response
from savegate.app import Gateway
from savegate.core.errors import InvalidRequest
from savegate.core.keys import ApiKey
from savegate.keys.spec import KeySettings, NewKey
from savegate.metering.queries import GROUPS, UsageFilters
from savegate.wire.validate import parse_json_object

MAX_PAGE = 1000
MAX_OFFSET = 2**63 - 1  # the databases' largest integer: a larger one fails in the driver


def _query(request: HttpRequest) -> dict[str, str]:
    raw = request.scope.get("query_string", b"").decode("latin-1")
    return {name: values[-1] for name, values in parse_qs(raw).items()}


def _int(query: dict[str, str], name: str, default: int, high: int | None = None) -> int:
    try:
        value = int(query.get(name, default))
    except ValueError:
        raise InvalidRequest(f"'{name}' must be an integer.", param=name) from None
    if value < 0 or (high is not None and value > high):
        raise InvalidRequest(f"'{name}' must be between 0 and {high}.", param=name)
    return value


def _time(query: dict[str, str], name: str) -> datetime | None:
    if name not in query:
        return None
    try:
        return datetime.fromisoformat(query[name])
    except ValueError:
        raise InvalidRequest(
            f"'{name}' must be an ISO 8601 date or date-time.", param=name
        ) from None


def _page(query: dict[str, str]) -> tuple[int, int]:
    return _int(query, "limit", 100, MAX_PAGE), _int(query, "offset", 0, MAX_OFFSET)


def _settings(model: type[KeySettings], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or None
        raise InvalidRequest(f"Invalid '{where}': {first['msg']}", param=where) from None


def _key_id(request: HttpRequest) -> str:
    return request.path.removeprefix("/admin/keys/")


async def list_keys(gateway: Gateway, request: HttpRequest, key: ApiKey) -> Response:
    query = _query(request)
    limit, offset = _page(query)
    include_revoked = query.get("include_revoked", "true") != "false"
    keys = await gateway.key_admin.list(
        include_revoked=include_revoked, limit=limit + 1, offset=offset
    )
    return json_response(
        {
            "object": "list",
            "data": [key.public() for key in keys[:limit]],
            "has_more": len(keys) > limit,
        }
    )


async def create_key(gateway: Gateway, request: HttpRequest, key: ApiKey) -> Response:
    spec = _settings(NewKey, parse_json_object(request.body))
    created, secret = await gateway.key_admin.create(spec)
    return json_response({**created.public(), "secret": secret}, status=201)


async def get_key(gateway: Gateway, request: HttpRequest, key: ApiKey) -> Response:
    return json_response((await gateway.key_admin.get(_key_id(request))).public())


async def update_key(gateway: Gateway, request: HttpRequest, key: ApiKey) -> Response:
    changes = _settings(KeySettings, parse_json_object(request.body))
    return json_response((await gateway.key_admin.update(_key_id(request), changes)).public())


async def revoke_key(gateway: Gateway, request: HttpRequest, key: ApiKey) -> Response:
    key_id = _key_id(request)
    await gateway.key_admin.revoke(key_id)
    return json_response({"id": key_id, "object": "api_key", "revoked": True})


def _filters(query: dict[str, str]) -> UsageFilters:
    return UsageFilters(
        start=_time(query, "start"),
        end=_time(query, "end"),
        key_id=query.get("key_id"),
        model=query.get("model"),
        provider=query.get("provider"),
    )


async def usage_report(gateway: Gateway, request: HttpRequest, key: ApiKey) -> Response:
    query = _query(request)
    group_by = query.get("group_by", "model")
    if group_by not in GROUPS:
        raise InvalidRequest(f"'group_by' must be one of {', '.join(GROUPS)}.", param="group_by")
    limit, offset = _page(query)
    rows = await gateway.usage_queries.grouped(group_by, _filters(query), limit + 1, offset)
    return json_response(
        {
            "object": "list",
            "group_by": group_by,
            "data": rows[:limit],
            "has_more": len(rows) > limit,
        }
    )


async def usage_requests(gateway: Gateway, request: HttpRequest, key: ApiKey) -> Response:
    query = _query(request)
    limit, offset = _page(query)
    rows = await gateway.usage_queries.requests(_filters(query), limit + 1, offset)
    return json_response({"object": "list", "data": rows[:limit], "has_more": len(rows) > limit})


async def spend_summary(gateway: Gateway, request: HttpRequest, key: ApiKey) -> Response:
    query = _query(request)
    return json_response(
        {"object": "spend_summary", **await gateway.usage_queries.summary(_filters(query))}
    )
