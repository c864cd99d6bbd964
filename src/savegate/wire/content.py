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
