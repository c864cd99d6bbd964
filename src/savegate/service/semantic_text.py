"""What the semantic cache compares of a chat request, and within what scope.

The compared text is the conversation's system, developer and user messages, one line
each, `role: text`, where a message's text is its string content or its text parts
joined by new lines; each is normalised (Unicode NFKC, case folded, runs of white space
made one space). Everything else must be the same for two requests to be compared at
all, and is hashed into their scope: the public model after aliases, every other field
but `user`, `stream` and `stream_options` (tools, `tool_choice`, `response_format`,
sampling parameters, …), the other messages (assistant turns, tool results) whole, and
the compared messages without their text (their order, names, image parts).
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from typing import Any

import orjson

COMPARED = frozenset({"system", "developer", "user"})
_IGNORED = ("user", "stream", "stream_options", "messages")


@dataclass(frozen=True, slots=True)
class Subject:
    text: str
    scope: str  # a hash


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _split(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A compared message's text, and the message without it."""
    content = message.get("content")
    if isinstance(content, str):
        return content, {**message, "content": ""}
    if not isinstance(content, list):
        return "", message
    texts = [part.get("text", "") for part in content if part.get("type") == "text"]
    rest = [{"type": "text"} if part.get("type") == "text" else part for part in content]
    return "\n".join(str(text) for text in texts), {**message, "content": rest}


def subject(body: dict[str, Any], model: str, context: list[Any]) -> Subject:
    """`context`: what else the scope depends on (the embedding model, the key, …)."""
    lines = []
    shape = []
    for message in body.get("messages") or []:
        if message.get("role") in COMPARED:
            text, rest = _split(message)
            lines.append(f"{message['role']}: {normalise(text)}")
            shape.append(rest)
        else:
            shape.append(message)
    fields = {name: value for name, value in body.items() if name not in _IGNORED}
    fields["model"] = model
    canonical = orjson.dumps([*context, fields, shape], option=orjson.OPT_SORT_KEYS)
    return Subject("\n".join(lines), hashlib.blake2b(canonical, digest_size=20).hexdigest())
