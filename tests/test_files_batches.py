"""Files and batches through the `openai` SDK's own methods, against a real gateway in
front of the fake upstream, on SQLite and on PostgreSQL: uploads, lists, content,
ownership, a batch's output and error files, its counts and its usage rows."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.batch_helpers import (
    chat_line,
    conforms,
    jsonl,
    other_key,
    results,
    upload,
    wait,
)
from tests.conftest import Service, start_gateway, stop
from tests.stores import database, query

MAX_FILE = 64 * 1024


@pytest.fixture(scope="module")
def workdirs() -> dict[str, Path]:
    """Each gateway's working directory, by its URL."""
    return {}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    fake_upstream: Service,
    workdirs: dict[str, Path],
) -> Iterator[tuple[Service, str]]:
    """A gateway on the backend, its database URL."""
    workdir = tmp_path_factory.mktemp(f"batches-{request.param}")
    os.environ.setdefault("FAKE_UPSTREAM_KEY", "sk-fake-upstream-key")
    with database(request.param, workdir) as url:
        config = {
            "database_url": url,
            "local": {"enabled": False},
            "files": {"max_bytes": MAX_FILE},
            "batches": {"poll_seconds": 0.2, "concurrency": 2},
            "prices": {"text-basic": {"input": 1.0, "output": 2.0}},
            "providers": {
                "fake": {
                    "base_url": fake_upstream.base_url,
                    "api_key_env": "FAKE_UPSTREAM_KEY",
                    "models": ["*"],
                    "batch_discount": 0.5,
                }
            },
        }
        service = start_gateway(workdir, config)
        workdirs[service.url] = workdir
        yield service, url
        stop(service.process)


def _client(service: Service, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(api_key=key or service.key, base_url=service.base_url, max_retries=0)


def test_files_upload_list_content_delete(store: tuple[Service, str]) -> None:
    service, _ = store
    client = _client(service)
    data = jsonl([chat_line(f"f{i}") for i in range(3)])
    created = client.files.create(file=("requests.jsonl", data), purpose="batch")
    conforms(created, "OpenAIFile")
    assert (created.bytes, created.filename, created.purpose) == (
        len(data),
        "requests.jsonl",
        "batch",
    )
    assert created.id.startswith("file-")
    other = client.files.create(
        file=("notes.txt", b"hello"),
        purpose="user_data",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert other.expires_at == other.created_at + 3600
    assert client.files.retrieve(created.id) == created
    assert client.files.content(created.id).read() == data

    listed = client.files.list()
    conforms(listed, "ListFilesResponse")
    ids = [file.id for file in listed.data]
    assert ids[:2] == [other.id, created.id]  # newest first
    assert [f.id for f in client.files.list(purpose="batch").data if f.id == other.id] == []
    first = client.files.list(limit=1)
    assert [file.id for file in first.data] == [other.id] and first.has_more
    second = client.files.list(limit=1, after=other.id)
    assert [file.id for file in second.data] == [created.id]
    assert client.files.list(order="asc").data[-1].id == other.id

    deleted = client.files.delete(other.id)
    conforms(deleted, "DeleteFileResponse")
    assert deleted.deleted
    for call in (client.files.retrieve, client.files.content, client.files.delete):
        with pytest.raises(openai.NotFoundError):
            call(other.id)


def test_files_are_the_uploading_keys_only(store: tuple[Service, str]) -> None:
    service, _ = store
    mine = _client(service).files.create(file=("a.jsonl", b"{}\n"), purpose="batch")
    stranger = _client(service, other_key(service))
    assert stranger.files.list().data == []
    for call in (stranger.files.retrieve, stranger.files.content, stranger.files.delete):
        with pytest.raises(openai.NotFoundError):
            call(mine.id)
    assert _client(service).files.retrieve(mine.id).id == mine.id


def test_bad_uploads_get_openai_errors(
    store: tuple[Service, str], workdirs: dict[str, Path]
) -> None:
    service, _ = store
    workdir = workdirs[service.url]
    client = _client(service)
    with pytest.raises(openai.BadRequestError) as bad:
        client.files.create(file=("a.jsonl", b"{}"), purpose="nonsense")  # type: ignore[arg-type]
    assert bad.value.body["param"] == "purpose"  # type: ignore[index]
    with pytest.raises(openai.APIStatusError) as large:
        client.files.create(file=("big.jsonl", b"x" * (MAX_FILE + 1)), purpose="batch")
    assert large.value.status_code == 413
    headers = {"Authorization": f"Bearer {service.key}"}
    missing = httpx.post(
        service.base_url + "/files", data={"purpose": "batch"}, files={}, headers=headers
    )
    assert missing.status_code == 400
    not_form = httpx.post(service.base_url + "/files", json={"purpose": "batch"}, headers=headers)
    assert not_form.status_code == 400 and not_form.json()["error"]["type"]
    cut = httpx.post(
        service.base_url + "/files",
        content=b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc',
        headers={**headers, "content-type": "multipart/form-data; boundary=b"},
    )
    assert cut.status_code == 400
    for path in ("/files/..%2F..%2Fsavegate.db/content", "/files/nope", "/files/a/b"):
        assert httpx.get(service.base_url + path, headers=headers).status_code == 404
    # Nothing that was refused is left behind on disk, half written or whole.
    assert not list((workdir / "data" / "files").glob(".tmp-*"))


def test_batch_answers_every_line_and_meters_it(store: tuple[Service, str]) -> None:
    service, url = store
    client = _client(service)
    tag = uuid.uuid4().hex[:8]
    lines = [chat_line(f"{tag}-{i}", max_tokens=50) for i in range(4)]
    lines.insert(2, chat_line(f"{tag}-bad", messages=[]))  # an invalid body: a 400 line
    input_id = upload(client, lines)
    batch = client.batches.create(
        input_file_id=input_id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": tag},
    )
    conforms(batch, "Batch")
    assert batch.status == "validating" and batch.metadata == {"job": tag}
    batch = wait(client, batch.id)
    conforms(batch, "Batch")
    assert batch.status == "completed", batch
    assert batch.request_counts.model_dump() == {"total": 5, "completed": 4, "failed": 1}
    for stamp in ("in_progress_at", "finalizing_at", "completed_at", "expires_at"):
        assert getattr(batch, stamp) >= batch.created_at
    assert batch.expires_at == batch.created_at + 86400
    assert batch.usage is not None and batch.usage.input_tokens > 0

    output = results(client, batch.output_file_id)
    assert [line["custom_id"] for line in output] == [f"{tag}-{i}" for i in range(4)]
    for line in output:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200
        assert line["response"]["request_id"] == line["id"]
        assert line["response"]["body"]["object"] == "chat.completion"
    (failed,) = results(client, batch.error_file_id)
    assert failed["custom_id"] == f"{tag}-bad"
    assert failed["response"]["status_code"] == 400
    assert failed["response"]["body"]["error"]["param"] == "messages"
    names = {f.id: f for f in client.files.list(purpose="batch_output").data}
    assert names[batch.output_file_id].filename == f"{batch.id}_output.jsonl"

    rows = query(
        url,
        "SELECT request_id, cost_usd, list_cost_usd, status FROM usage WHERE batch_id = :b",
        {"b": batch.id},
    )
    assert sorted(row[0] for row in rows) == sorted(line["id"] for line in output)
    for _, paid, listed, status in rows:
        assert status == 200 and listed > 0
        assert paid == pytest.approx(listed * 0.5)  # the provider's batch discount


def test_batches_are_the_creating_keys_only(store: tuple[Service, str]) -> None:
    service, _ = store
    client = _client(service)
    batch = client.batches.create(
        input_file_id=upload(client, [chat_line("own-1")]),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    listed = client.batches.list(limit=100)
    conforms(listed, "ListBatchesResponse")
    assert batch.id in [b.id for b in listed.data]
    stranger = _client(service, other_key(service))
    assert stranger.batches.list().data == []
    for call in (stranger.batches.retrieve, stranger.batches.cancel):
        with pytest.raises(openai.NotFoundError):
            call(batch.id)
    done = wait(client, batch.id)
    with pytest.raises(openai.NotFoundError):
        stranger.files.content(done.output_file_id)
    with pytest.raises(openai.NotFoundError):  # nor can it batch another key's file
        stranger.batches.create(
            input_file_id=batch.input_file_id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )


def test_embeddings_batch(store: tuple[Service, str]) -> None:
    service, _ = store
    client = _client(service)
    line = {
        "custom_id": "e1",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "text-embedding-3-small", "input": ["one", "two"]},
    }
    batch = client.batches.create(
        input_file_id=upload(client, [line]), endpoint="/v1/embeddings", completion_window="24h"
    )
    batch = wait(client, batch.id)
    (answer,) = results(client, batch.output_file_id)
    assert answer["response"]["body"]["object"] == "list"
    assert len(answer["response"]["body"]["data"]) == 2


def test_a_bad_input_file_fails_the_batch(store: tuple[Service, str]) -> None:
    service, _ = store
    client = _client(service)
    lines = [
        chat_line("same"),
        b"{not json",
        chat_line("same"),
        {**chat_line("wrong-url"), "url": "/v1/embeddings"},
        {**chat_line("wrong-method"), "method": "GET"},
        {"method": "POST", "url": "/v1/chat/completions", "body": {}},
    ]
    batch = client.batches.create(
        input_file_id=upload(client, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    batch = wait(client, batch.id)
    conforms(batch, "Batch")
    assert batch.status == "failed" and batch.failed_at is not None
    assert batch.output_file_id is None and batch.error_file_id is None
    errors = [(e.code, e.line) for e in batch.errors.data]
    assert errors == [
        ("invalid_json_line", 2),
        ("duplicate_custom_id", 3),
        ("invalid_url", 4),
        ("invalid_method", 5),
        ("missing_required_parameter", 6),
    ]
    empty = client.batches.create(
        input_file_id=upload(client, [b""]),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    assert [e.code for e in wait(client, empty.id).errors.data] == ["empty_file"]


def test_bad_batch_requests_get_openai_errors(store: tuple[Service, str]) -> None:
    service, _ = store
    client = _client(service)
    notes = client.files.create(file=("n.txt", b"x"), purpose="user_data").id
    batch_file = upload(client, [chat_line("x")])
    cases = [
        ({"input_file_id": notes}, openai.BadRequestError, "input_file_id"),
        ({"input_file_id": "file-nope"}, openai.NotFoundError, "input_file_id"),
        ({"input_file_id": batch_file, "endpoint": "/v1/nope"}, openai.BadRequestError, "endpoint"),
        ({"input_file_id": batch_file, "completion_window": "1h"}, openai.BadRequestError, None),
    ]
    for change, error, param in cases:
        arguments = {
            "input_file_id": batch_file,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            **change,
        }
        with pytest.raises(error) as raised:
            client.batches.create(**arguments)  # type: ignore[arg-type]
        if param:
            assert raised.value.body["param"] == param  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")
