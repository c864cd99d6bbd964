"""Reading OpenAI message content, which is a string or a list of typed parts."""

from __future__ import annotations

from typing import Any


def text_of(content: Any, separator: str = "") -> str:
    """The text of a message's content: the string itself, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return separator.join(
            part.get("text", "") for part in content if part.get("type") == "text"
        )
    return ""


def without_cache_control(body: dict[str, Any]) -> dict[str, Any]:
    """A chat request without Anthropic's prompt-caching breakpoints (on messages, their
    parts and tools), for upstreams that refuse fields they do not know."""

    def bare(item: Any) -> Any:
        if not isinstance(item, dict) or "cache_control" not in item:
            return item
        return {name: value for name, value in item.items() if name != "cache_control"}

    def message(item: dict[str, Any]) -> dict[str, Any]:
        item = bare(item)
        content = item.get("content")
        if isinstance(content, list):
            item = {**item, "content": [bare(part) for part in content]}
        return item

    stripped = {**body, "messages": [message(m) for m in body.get("messages") or []]}
    if body.get("tools"):
        stripped["tools"] = [bare(tool) for tool in body["tools"]]
    return stripped
