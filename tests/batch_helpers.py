"""What the files and batches tests share: JSONL input files, waiting for a batch, the
output read back, a second key, and OpenAI's own schemas to check the objects by."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai

from tests.conftest import Service

SCHEMAS = json.loads(
    (Path(__file__).parent / "fixtures" / "openai-batch" / "schemas.json").read_text()
)
ENDED = ("completed", "failed", "expired", "cancelled")


def conforms(value: Any, schema: str) -> None:
    """`value` (an SDK object or JSON) matches OpenAI's schema of that name."""
    # As the gateway sent it: the SDK fills the fields it left out with None.
    data = value
    if hasattr(value, "model_dump"):
        data = value.model_dump(mode="json", exclude_unset=True)
    jsonschema.validate(data, {"$ref": f"#/$defs/{schema}", "$defs": SCHEMAS["$defs"]})


def chat_line(custom_id: str, model: str = "text-basic", **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": custom_id}], **body},
    }


def jsonl(lines: list[Any]) -> bytes:
    return b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )


def upload(client: openai.OpenAI, lines: list[Any], name: str = "input.jsonl") -> str:
    return client.files.create(file=(name, jsonl(lines)), purpose="batch").id


def wait(client: openai.OpenAI, batch_id: str, timeout: float = 90, until: Any = None) -> Any:
    """The batch once it has ended (or once `until(batch)` is true)."""
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if until(batch) if until is not None else batch.status in ENDED:
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)


def results(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    text = client.files.content(file_id).read().decode()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def other_key(service: Service, **settings: Any) -> str:
    """A new user key (with `settings`, such as a budget), made through the admin API."""
    response = httpx.post(
        service.url + "/admin/keys",
        json={"name": "other", **settings},
        headers={"Authorization": f"Bearer {service.keys['admin']}"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["secret"])


def fake_requests(fake: Service) -> list[dict[str, Any]]:
    return list(httpx.get(fake.url + "/_log").json()["requests"])


def asked(fake: Service, custom_id: str) -> int:
    """How many times the fake upstream was asked the line `custom_id` (its content)."""
    return sum(
        1
        for request in fake_requests(fake)
        if (request["body"].get("messages") or [{}])[0].get("content") == custom_id
    )
