"""OpenAI's Files and Batch APIs, faked: `POST /v1/files` (multipart, purpose batch),
`GET /v1/files/{id}/content`, `POST /v1/batches`, `GET /v1/batches` (newest first),
`GET /v1/batches/{id}` and `POST /v1/batches/{id}/cancel`.

A batch stays `in_progress` until `GET /_batches/release`; then it completes, with an
answer and usage for each line, and an error for each line whose custom_id starts `err`.
`GET /_batches` shows what was uploaded and asked. An input line for the model
`upstream-reject` makes creating the batch fail with 400, and one for `upstream-fail`
makes the batch end `failed`.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson

STATE: dict[str, Any] = {"files": {}, "batches": {}, "cancels": [], "authorization": []}
USAGE = {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}


async def _send(
    send: Any, status: int, body: Any, content_type: bytes = b"application/json"
) -> None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type)],
        }
    )
    await send({"type": "http.response.body", "body": raw})


def _error(message: str) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    }


def _file_part(body: bytes, content_type: str) -> bytes | None:
    boundary = content_type.partition("boundary=")[2].strip('"').encode()
    for part in body.split(b"--" + boundary):
        head, _, content = part.partition(b"\r\n\r\n")
        if b'name="file"' in head:
            return content.removesuffix(b"\r\n")
    return None


def _lines(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


def _new_file(data: bytes, purpose: str) -> dict[str, Any]:
    file_id = "file-up" + secrets.token_hex(8)
    STATE["files"][file_id] = {"data": data, "purpose": purpose}
    created = int(time.time())
    return {
        "id": file_id,
        "object": "file",
        "bytes": len(data),
        "created_at": created,
        "filename": f"{file_id}.jsonl",
        "purpose": purpose,
        "status": "processed",
    }


def _answer(line: dict[str, Any]) -> bytes:
    body = line["body"]
    completion = {
        "id": "chatcmpl-up" + secrets.token_hex(6),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": f"upstream batch answer to {line['custom_id']}",
                },
            }
        ],
        "usage": USAGE,
    }
    result = {
        "id": "batch_req_up" + secrets.token_hex(6),
        "custom_id": line["custom_id"],
        "response": {"status_code": 200, "request_id": secrets.token_hex(6), "body": completion},
        "error": None,
    }
    return orjson.dumps(result) + b"\n"


def _refused(line: dict[str, Any]) -> bytes:
    body = _error(f"the fake upstream refuses {line['custom_id']}")
    response = {"status_code": 400, "request_id": secrets.token_hex(6), "body": body}
    result = {
        "id": "batch_req_up" + secrets.token_hex(6),
        "custom_id": line["custom_id"],
        "response": response,
        "error": None,
    }
    return orjson.dumps(result) + b"\n"


def _advance(batch: dict[str, Any]) -> None:
    """A released batch ends, and a cancelling one is cancelled, when it is next read."""
    lines = _lines(STATE["files"][batch["input_file_id"]]["data"])
    if batch["status"] == "cancelling":
        batch.update(status="cancelled", cancelled_at=int(time.time()))
    elif batch["status"] == "in_progress" and batch.pop("released", False):
        if any(line["body"]["model"] == "upstream-fail" for line in lines):
            error = {
                "code": "upstream_failed",
                "message": "the fake upstream failed it",
                "param": None,
                "line": None,
            }
            batch.update(
                status="failed",
                failed_at=int(time.time()),
                errors={"object": "list", "data": [error]},
            )
            return
        good = [line for line in lines if not line["custom_id"].startswith("err")]
        bad = [line for line in lines if line["custom_id"].startswith("err")]
        output = _new_file(b"".join(_answer(line) for line in good), "batch_output")
        batch.update(
            status="completed",
            completed_at=int(time.time()),
            output_file_id=output["id"],
            request_counts={"total": len(lines), "completed": len(good), "failed": len(bad)},
        )
        if bad:
            batch["error_file_id"] = _new_file(b"".join(map(_refused, bad)), "batch_output")["id"]


async def handle(scope: dict[str, Any], body: bytes, send: Any) -> None:
    path, method = scope["path"], scope["method"]
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    STATE["authorization"].append(headers.get("authorization"))
    if path == "/_batches/release":
        for batch in STATE["batches"].values():
            batch["released"] = True
        await _send(send, 200, {})
    elif path == "/_batches":
        shown = {
            "files": {k: v["data"].decode() for k, v in STATE["files"].items()},
            "batches": STATE["batches"],
            "cancels": STATE["cancels"],
            "authorization": STATE["authorization"],
        }
        await _send(send, 200, shown)
    elif path == "/v1/files" and method == "POST":
        data = _file_part(body, headers.get("content-type", ""))
        if data is None:
            await _send(send, 400, _error("no file"))
        else:
            await _send(send, 200, _new_file(data, "batch"))
    elif path.startswith("/v1/files/") and path.endswith("/content"):
        found = STATE["files"].get(path.split("/")[3])
        if found is None:
            await _send(send, 404, _error("no such file"))
        else:
            await _send(send, 200, found["data"], b"application/octet-stream")
    elif path == "/v1/batches" and method == "POST":
        await _create(orjson.loads(body), send)
    elif path == "/v1/batches":
        newest = sorted(STATE["batches"].values(), key=lambda b: b["created_at"], reverse=True)
        shown = [{k: v for k, v in b.items() if k != "released"} for b in newest]
        await _send(send, 200, {"object": "list", "data": shown, "has_more": False})
    elif path.startswith("/v1/batches/"):
        parts = path.split("/")
        batch = STATE["batches"].get(parts[3])
        if batch is None:
            await _send(send, 404, _error("no such batch"))
            return
        if parts[-1] == "cancel":
            STATE["cancels"].append(batch["id"])
            if batch["status"] == "in_progress":
                batch.update(status="cancelling", cancelling_at=int(time.time()))
        else:
            _advance(batch)
        await _send(send, 200, {k: v for k, v in batch.items() if k != "released"})
    else:
        await _send(send, 404, _error("not here"))


async def _create(request: dict[str, Any], send: Any) -> None:
    found = STATE["files"].get(request.get("input_file_id"))
    if found is None:
        await _send(send, 404, _error("no such input file"))
        return
    lines = _lines(found["data"])
    if any(line["body"]["model"] == "upstream-reject" for line in lines):
        await _send(send, 400, _error("the fake upstream rejects this batch"))
        return
    now = int(time.time())
    batch = {
        "id": "batch_up" + secrets.token_hex(8),
        "object": "batch",
        "endpoint": request["endpoint"],
        "input_file_id": request["input_file_id"],
        "completion_window": request["completion_window"],
        "status": "in_progress",
        "created_at": now,
        "in_progress_at": now,
        "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
        "metadata": request.get("metadata"),
    }
    STATE["batches"][batch["id"]] = batch
    await _send(send, 200, batch)
