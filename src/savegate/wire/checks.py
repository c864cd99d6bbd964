"""Checks of JSON values against the shapes and bounds OpenAI accepts, raising its errors.

Every check names the value by its full path (`input[0].content`), as OpenAI's `param`
does, so a client can find the fault in what it sent. `None` (absent or null) passes
every check of an optional value; the caller asks for `missing()` where it is required.
"""

from __future__ import annotations

from typing import Any

from savegate.core.errors import InvalidRequest

# Bounds OpenAI documents (its API reference and error messages).
MAX_STRING = 10_485_760  # characters in one string: content, instructions, prompt
MAX_TOOLS = 128
MAX_STOP = 4
MAX_N = 128
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
MAX_EMBEDDING_INPUTS = 2048
# Ours: far beyond any real request, and well inside orjson's serialisation limit (254
# levels), so whatever the gateway wraps around a request still serialises.
MAX_DEPTH = 64

_NUMBER = (int, float)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def invalid_type(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def invalid_value(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid value for '{param}': {message}", param=param, code="invalid_value"
    )


def missing(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def string(value: Any, param: str, max_length: int = MAX_STRING) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise invalid_type(param, "a string", value)
    if len(value) > max_length:
        raise InvalidRequest(
            f"Invalid '{param}': string too long. Expected a string with maximum length "
            f"{max_length}, but got a string with length {len(value)} instead.",
            param=param,
            code="string_above_max_length",
        )


def required_string(value: Any, param: str, max_length: int = MAX_STRING) -> None:
    if value is None:
        raise missing(param)
    string(value, param, max_length)


def boolean(value: Any, param: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise invalid_type(param, "a boolean", value)


def number(value: Any, param: str, low: float, high: float) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        raise invalid_type(param, "a number", value)
    if not low <= value <= high:
        raise InvalidRequest(
            f"Invalid '{param}': {value} is not between {low:g} and {high:g}.",
            param=param,
            code="invalid_value",
        )


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(value: Any, param: str, low: int, high: int | None = None) -> None:
    if value is None:
        return
    if not is_integer(value):
        raise invalid_type(param, "an integer", value)
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise InvalidRequest(
            f"Invalid '{param}': {value} must be {bound}.", param=param, code="invalid_value"
        )


def mapping(value: Any, param: str) -> dict[str, Any]:
    """`value` as an object; it must be present."""
    if not isinstance(value, dict):
        raise invalid_type(param, "an object", value)
    return value


def array(value: Any, param: str, max_items: int | None = None) -> list[Any]:
    """`value` as an array of at most `max_items`; it must be present."""
    if not isinstance(value, list):
        raise invalid_type(param, "an array", value)
    if max_items is not None and len(value) > max_items:
        raise InvalidRequest(
            f"Invalid '{param}': array too long. Expected an array with maximum length "
            f"{max_items}, but got an array with length {len(value)} instead.",
            param=param,
            code="array_above_max_length",
        )
    return value


def non_empty(items: list[Any], param: str) -> None:
    if not items:
        raise InvalidRequest(
            f"Invalid '{param}': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param=param,
            code="empty_array",
        )


def one_of(value: Any, param: str, allowed: tuple[str, ...]) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise invalid_type(param, "a string", value)
    if value not in allowed:
        raise invalid_value(
            param, f"'{value}'. Supported values are: {', '.join(repr(a) for a in allowed)}."
        )


def metadata(value: Any, param: str) -> None:
    """OpenAI's metadata: up to 16 string pairs, keys up to 64 and values up to 512 long."""
    if value is None:
        return
    pairs = mapping(value, param)
    if len(pairs) > MAX_METADATA_PAIRS:
        raise invalid_value(param, f"at most {MAX_METADATA_PAIRS} key-value pairs are allowed.")
    for key, item in pairs.items():
        if len(key) > MAX_METADATA_KEY:
            raise invalid_value(param, f"keys must be at most {MAX_METADATA_KEY} characters.")
        required_string(item, f"{param}.{key}", MAX_METADATA_VALUE)


def too_deep(value: Any) -> str | None:
    """The path of a container nested deeper than `MAX_DEPTH` in `value`, or None.

    A loop over the containers alone, not recursion: orjson parses up to 1024 levels,
    more than Python's own recursion limit."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        if depth > MAX_DEPTH:
            return path
        children = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in children:
            if isinstance(child, dict | list):
                if isinstance(key, int):
                    step = f"{path}[{key}]"
                else:
                    step = f"{path}.{key}" if path else key
                stack.append((child, depth + 1, step))
    return None
