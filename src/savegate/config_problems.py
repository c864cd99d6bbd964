"""A configuration's problems, each named by its path in the file
(`providers.openai.models[2]: …`, `routing.max_attempts: must be ≥ 1`), so that an
operator finds the line at once: for `savegate config check`, `savegate serve` and a
live reload alike."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_*?-]+")
_BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
_UNION_MEMBER = re.compile(r"constrained-[\w-]+|[\w-]+\[.*\]")
_BOUND_ERRORS = {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}


def where(loc: Sequence[int | str]) -> str:
    """`("providers", "openai", "models", 2)` → `providers.openai.models[2]`; a key that
    is not a plain word (`gpt-4.1`) is quoted."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        key = part if _PLAIN_KEY.fullmatch(part) else f'"{part}"'
        path += f".{key}" if path else key
    return path


def _message(error: Any) -> str:
    kind, context = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required"
    bound = next((name for name in _BOUNDS if name in context), None)
    if kind in _BOUND_ERRORS and bound is not None:
        limit = context[bound]
        shown = int(limit) if isinstance(limit, float) and limit.is_integer() else limit
        return f"must be {_BOUNDS[bound]} {shown}"
    message = str(error["msg"]).removeprefix("Value error, ")
    message = message.replace("Input should be", "must be")
    value = error.get("input")
    # Strings are not echoed: a credential put in the wrong place would be printed.
    if kind != "value_error" and (value is None or isinstance(value, bool | int | float)):
        message += f" (got {value!r})"
    return message


def validation_problems(exc: ValidationError) -> list[str]:
    found: dict[str, list[str]] = {}  # path → messages (a union's members each say theirs)
    for error in exc.errors():
        message = _message(error)
        path = where([part for part in error["loc"] if not _is_union_member(part)])
        if not path:  # a check of the whole file: its message names its own paths
            for line in message.splitlines():
                found.setdefault(line, [])
        else:
            found.setdefault(path, []).append(message)
    return [
        f"{path}: " + " or ".join(m.removeprefix("must be ") if i else m for i, m in enumerate(ms))
        if ms
        else path
        for path, ms in found.items()
    ]


def _is_union_member(part: int | str) -> bool:
    """Pydantic names the member of a union it tried (`constrained-int`, `literal['auto']`)
    in the error's location; the file has no such key."""
    return isinstance(part, str) and bool(_UNION_MEMBER.fullmatch(part))


def environment_problems(raw: object) -> list[str]:
    """Upstream key variables (`api_key_env`) that are not set, read from the file as it
    is, so they are reported together with any other problem."""
    providers = raw.get("providers") if isinstance(raw, dict) else None
    if not isinstance(providers, dict):
        return []
    problems = []
    for name, provider in providers.items():
        names = provider.get("api_key_env") if isinstance(provider, dict) else None
        listed = [names] if isinstance(names, str) else names
        if not isinstance(listed, list):
            continue
        for index, variable in enumerate(listed):
            if isinstance(variable, str) and not os.environ.get(variable):
                loc: list[int | str] = ["providers", str(name), "api_key_env"]
                if not isinstance(names, str):
                    loc.append(index)
                problems.append(f"{where(loc)}: environment variable {variable} is not set")
    return problems
