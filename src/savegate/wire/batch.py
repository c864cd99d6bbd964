"""The Batch API's wire shapes: the create request, the input file's lines, and the
output and error files' lines (OpenAI's JSONL)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from savegate.wire.checks import metadata, missing, one_of, required_string

ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/responses")
WINDOWS = ("24h",)
MAX_LINES = 50_000
MAX_ERRORS = 100  # listed in a failed batch's `errors`; the rest are not


def validate_batch_request(body: dict[str, Any]) -> dict[str, Any]:
    required_string(body.get("input_file_id"), "input_file_id", 64)
    for name, allowed in (("endpoint", ENDPOINTS), ("completion_window", WINDOWS)):
        if body.get(name) is None:
            raise missing(name)
        one_of(body[name], name, allowed)
    metadata(body.get("metadata"), "metadata")
    return body


def line_request_id(batch_id: str, line: int) -> str:
    """The same for a line however often it is tried: its id in the output file."""
    digest = hashlib.blake2b(f"{batch_id}:{line}".encode(), digest_size=12).hexdigest()
    return f"batch_req_{digest}"


@dataclass(frozen=True, slots=True)
class InputLine:
    custom_id: str
    body: dict[str, Any]


class LineError(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param

    def entry(self, line: int) -> dict[str, Any]:
        """An entry of the batch's `errors` (`line` counts from 1)."""
        return {"code": self.code, "message": self.message, "param": self.param, "line": line}


def parse_line(raw: bytes, endpoint: str) -> InputLine:
    """One request of an input file, or LineError."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise LineError("invalid_json_line", "This line is not valid JSON.") from None
    if not isinstance(data, dict):
        raise LineError("invalid_json_line", "This line is not a JSON object.")
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise LineError("missing_required_parameter", "Missing 'custom_id'.", "custom_id")
    if data.get("method") != "POST":
        raise LineError("invalid_method", "'method' must be POST.", "method")
    if data.get("url") != endpoint:
        raise LineError("invalid_url", f"'url' must be the batch's endpoint, {endpoint}.", "url")
    body = data.get("body")
    if not isinstance(body, dict):
        raise LineError("missing_required_parameter", "'body' must be a JSON object.", "body")
    return InputLine(custom_id, body)


def blank(raw: bytes) -> bool:
    return not raw.strip()


def answered(request_id: str, custom_id: str, status: int, body: bytes) -> bytes:
    """An output (or error) line for a request that got an answer: `body` is its JSON."""
    head = orjson.dumps(
        {"id": request_id, "custom_id": custom_id, "response": {"status_code": status}}
    )
    # The body's own bytes, spliced in: an answer is not parsed and serialised again.
    return (
        head[:-2]
        + b',"request_id":'
        + orjson.dumps(request_id)
        + b',"body":'
        + body
        + b'},"error":null}'
    )


def unanswered(request_id: str, custom_id: str, code: str, message: str) -> bytes:
    """An error line for a request that was never sent (the batch stopped first)."""
    return orjson.dumps(
        {
            "id": request_id,
            "custom_id": custom_id,
            "response": None,
            "error": {"code": code, "message": message},
        }
    )
