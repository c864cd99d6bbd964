"""What the semantic cache compares of a chat request, and within what scope.

The compared text is the conversation's user messages, one a line, where a message's
text is its string content or its text parts joined by a space; each is normalised
(Unicode NFKC, case folded, runs of white space made one space). Everything else must be
the same for two requests to be compared at all, and is hashed into their scope: the
public model after aliases, every other field but `user`, `stream` and `stream_options`
(tools, `tool_choice`, `response_format`, sampling parameters, …, equal numbers written
alike as in the exact cache's key), the system and developer messages (their text
normalised likewise), the other messages (assistant turns, tool results) whole, and the
user messages without their text (their number and order, names, image parts). System
prompts are not compared but must match: a long one shared by every request would make
any two questions look alike.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from typing import Any

import orjson

from savegate.service.cache import canonical_fields

_IGNORED = ("user", "stream", "stream_options", "messages")
_NORMALISED = frozenset({"system", "developer"})  # their text in the scope, normalised


@dataclass(frozen=True, slots=True)
class Subject:
    text: str
    scope: str  # a hash


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _split(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A message's text, and the message without it."""
    content = message.get("content")
    if isinstance(content, str):
        return content, {**message, "content": ""}
    if not isinstance(content, list):
        return "", message
    texts = [part.get("text", "") for part in content if part.get("type") == "text"]
    rest = [{"type": "text"} if part.get("type") == "text" else part for part in content]
    return " ".join(str(text) for text in texts), {**message, "content": rest}


def subject(body: dict[str, Any], model: str, context: list[Any]) -> Subject:
    """`context`: what else the scope depends on (the embedding model, the key, …)."""
    lines = []
    shape = []
    for message in body.get("messages") or []:
        role = message.get("role")
        if role == "user":
            text, rest = _split(message)
            lines.append(normalise(text))
            shape.append(rest)
        elif role in _NORMALISED:
            text, rest = _split(message)
            shape.append({**rest, "text": normalise(text)})
        else:
            shape.append(message)
    fields = canonical_fields(body, _IGNORED)
    fields["model"] = model
    canonical = orjson.dumps([*context, fields, shape], option=orjson.OPT_SORT_KEYS)
    return Subject("\n".join(lines), hashlib.blake2b(canonical, digest_size=20).hexdigest())
