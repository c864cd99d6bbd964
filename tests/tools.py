"""Tool definitions several test modules send."""

from __future__ import annotations

# A strict tool without parameters: its calls' arguments must still add up to `{}`.
NO_ARGUMENTS = {
    "type": "function",
    "function": {
        "name": "get_time",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {},
            "required": [],
            "additionalProperties": False,
        },
    },
}
