"""Identifiers in the shapes clients expect (`chatcmpl-…`, `call_…`, `req_…`)."""

from __future__ import annotations

import secrets


def request_id() -> str:
    return "req_" + secrets.token_hex(16)


def completion_id() -> str:
    return "chatcmpl-" + secrets.token_urlsafe(21).replace("-", "a").replace("_", "b")


def tool_call_id() -> str:
    return "call_" + secrets.token_urlsafe(18).replace("-", "a").replace("_", "b")
