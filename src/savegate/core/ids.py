"""Identifiers in the shapes clients expect (`chatcmpl-…`, `call_…`, `req_…`)."""

from __future__ import annotations

import random
import secrets


def request_id() -> str:
    # Unique, not secret: the fast generator will do (one per request on the hot path).
    return f"req_{random.getrandbits(128):032x}"


def completion_id() -> str:
    return "chatcmpl-" + secrets.token_urlsafe(21).replace("-", "a").replace("_", "b")


def tool_call_id() -> str:
    return "call_" + secrets.token_urlsafe(18).replace("-", "a").replace("_", "b")
