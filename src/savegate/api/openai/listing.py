"""The query parameters of OpenAI's list endpoints (`limit`, `after`, `order`) and the
list object they answer."""

from __future__ import annotations

from typing import Any

from savegate.core.errors import InvalidRequest


def limit(query: dict[str, str], default: int, high: int) -> int:
    try:
        value = int(query.get("limit", default))
    except ValueError:
        raise InvalidRequest("'limit' must be an integer.", param="limit") from None
    if not 1 <= value <= high:
        raise InvalidRequest(f"'limit' must be between 1 and {high}.", param="limit")
    return value


def page(data: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": more,
    }
