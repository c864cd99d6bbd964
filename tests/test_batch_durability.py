"""Batches that are cut short: the gateway killed mid-batch (it resumes, each line
answered and metered once), two replicas sharing one database (each line run once),
a cancel, a hard budget, and the completion window running out."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.batch_helpers import asked, chat_line, other_key, results, upload, wait
from tests.conftest import Service, start_gateway, stop
from tests.stores import database, query

SLOW = "slow-first-400"  # the fake answers after 0.4 s


def _config(fake: Service, url: str, **batches: Any) -> dict[str, Any]:
    os.environ.setdefault("FAKE_UPSTREAM_KEY", "sk-fake-upstream-key")
    return {
        "database_url": url,
        "local": {"enabled": False},
        "batches": {"poll_seconds": 0.2, "lease_seconds": 2, "concurrency": 2, **batches},
        "prices": {"text-basic": {"input": 1000.0, "output": 1000.0}},
        "providers": {
            "fake": {
                "base_url": fake.base_url,
                "api_key_env": "FAKE_UPSTREAM_KEY",
                "models": ["*"],
            }
        },
    }


def _client(service: Service, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=service.base_url, max_retries=0)


def _start(client: openai.OpenAI, lines: list[dict[str, Any]]) -> str:
    return client.batches.create(
        input_file_id=upload(client, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    ).id


def _usage(url: str, batch_id: str) -> list[Any]:
    return query(
        url, "SELECT request_id, status, cost_usd FROM usage WHERE batch_id = :b", {"b": batch_id}
    )


def _once_each(client: openai.OpenAI, url: str, batch: Any, ids: list[str]) -> None:
    """Every line answered once in the output, and metered once."""
    assert batch.status == "completed", batch
    assert batch.request_counts.completed == len(ids)
    output = results(client, batch.output_file_id)
    assert [line["custom_id"] for line in output] == ids
    rows = _usage(url, batch.id)
    assert sorted(row[0] for row in rows) == sorted(line["id"] for line in output)
    assert all(row[1] == 200 for row in rows)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_killed_gateway_resumes_its_batch(
    backend: str, tmp_path: Path, fake_upstream: Service
) -> None:
    with database(backend, tmp_path) as url:
        config = _config(fake_upstream, url)
        first = start_gateway(tmp_path, config)
        key = first.key
        try:
            client = _client(first, key)
            tag = uuid.uuid4().hex[:8]
            ids = [f"{tag}-{i}" for i in range(12)]
            batch_id = _start(client, [chat_line(i, SLOW) for i in ids])
            wait(client, batch_id, until=lambda b: b.request_counts.completed >= 3)
        finally:
            first.process.kill()  # SIGKILL: no shutdown, no lease released
            first.process.wait()
        done = {
            row[0]
            for row in query(
                url, "SELECT line FROM batch_lines WHERE batch_id = :b", {"b": batch_id}
            )
        }
        assert 3 <= len(done) < len(ids)
        second = start_gateway(tmp_path, config, name="gateway-again")
        try:
            client = _client(second, key)
            batch = wait(client, batch_id)
            _once_each(client, url, batch, ids)
            for line, custom_id in enumerate(ids):
                # Done before the kill: never asked again. In flight at the kill: asked
                # twice at most (the answer was lost with the process).
                times = asked(fake_upstream, custom_id)
                assert times == 1 if line in done else 1 <= times <= 2
            assert sum(asked(fake_upstream, i) for i in ids) <= len(ids) + 2
        finally:
            stop(second.process)


def test_replicas_run_each_line_once(tmp_path: Path, fake_upstream: Service) -> None:
    """Two replicas on one PostgreSQL database and one shared files directory."""
    with database("postgres", tmp_path) as url:
        config = {**_config(fake_upstream, url), "files": {"directory": str(tmp_path / "shared")}}
        one = start_gateway(tmp_path / "one", config)
        two = start_gateway(tmp_path / "two", config)
        try:
            tag = uuid.uuid4().hex[:8]
            ids = [f"{tag}-{i}" for i in range(10)]
            client = _client(one, one.key)
            batch_id = _start(client, [chat_line(i, SLOW) for i in ids])
            batch = wait(_client(two, one.key), batch_id)  # either replica sees it
            _once_each(client, url, batch, ids)
            assert [asked(fake_upstream, i) for i in ids] == [1] * len(ids)
        finally:
            stop(one.process)
            stop(two.process)


@pytest.fixture(scope="module")
def gateway_a(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: Service
) -> Iterator[tuple[Service, str]]:
    workdir = tmp_path_factory.mktemp("batch-a")
    with database("sqlite", workdir) as url:
        service = start_gateway(workdir, _config(fake_upstream, url, concurrency=1))
        yield service, url
        stop(service.process)


def test_cancel_stops_a_batch_midway(
    gateway_a: tuple[Service, str], fake_upstream: Service
) -> None:
    service, url = gateway_a
    client = _client(service, service.key)
    tag = uuid.uuid4().hex[:8]
    ids = [f"{tag}-{i}" for i in range(20)]
    batch_id = _start(client, [chat_line(i, SLOW) for i in ids])
    wait(client, batch_id, until=lambda b: b.request_counts.completed >= 2)
    cancelling = client.batches.cancel(batch_id)
    assert cancelling.status in ("cancelling", "cancelled")
    assert cancelling.cancelling_at is not None
    batch = wait(client, batch_id)
    assert batch.status == "cancelled" and batch.cancelled_at >= batch.cancelling_at
    counts = batch.request_counts
    assert 2 <= counts.completed < len(ids) and counts.failed == 0 and counts.total == len(ids)
    output = results(client, batch.output_file_id)
    assert [line["custom_id"] for line in output] == ids[: counts.completed]
    assert batch.error_file_id is None  # the lines never run are not listed
    assert sum(asked(fake_upstream, i) for i in ids) == counts.completed  # nothing after
    assert len(_usage(url, batch_id)) == counts.completed
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(wait(client, _start(client, [chat_line(f"{tag}-x")])).id)


def test_a_hard_budget_stops_a_batch(
    gateway_a: tuple[Service, str], fake_upstream: Service
) -> None:
    service, url = gateway_a
    budget = 0.3  # USD: a line reserves about $0.2 (its bytes and max_tokens), costs $0.044
    key = other_key(service, monthly_budget_usd=budget, budget_mode="hard")
    client = _client(service, key)
    tag = uuid.uuid4().hex[:8]
    ids = [f"{tag}-{i}" for i in range(10)]
    batch = wait(client, _start(client, [chat_line(i, max_tokens=50) for i in ids]))
    assert batch.status == "completed"
    counts = batch.request_counts
    assert counts.completed >= 1 and counts.failed >= 1
    assert counts.completed + counts.failed == counts.total == len(ids)
    spent = sum(row[2] for row in _usage(url, batch.id))
    assert 0 < spent <= budget
    assert sum(asked(fake_upstream, i) for i in ids) == counts.completed
    failed = results(client, batch.error_file_id)
    assert len(failed) == counts.failed
    for line in failed:
        if line["response"] is not None:  # the line refused
            assert line["response"]["status_code"] == 429
            assert line["response"]["body"]["error"]["code"] == "insufficient_quota"
        else:  # the lines after it, never sent
            assert line["error"]["code"] == "insufficient_quota"
    output = results(client, batch.output_file_id)
    assert sorted(line["custom_id"] for line in output + failed) == sorted(ids)


def test_a_batch_expires_when_its_window_passes(tmp_path: Path, fake_upstream: Service) -> None:
    with database("sqlite", tmp_path) as url:
        service = start_gateway(
            tmp_path, _config(fake_upstream, url, concurrency=1, window_seconds=2)
        )
        try:
            client = _client(service, service.key)
            tag = uuid.uuid4().hex[:8]
            ids = [f"{tag}-{i}" for i in range(20)]
            started = time.monotonic()
            batch = wait(client, _start(client, [chat_line(i, SLOW) for i in ids]))
            assert time.monotonic() - started >= 2
            assert batch.status == "expired" and batch.expired_at is not None
            counts = batch.request_counts
            assert counts.completed + counts.failed == len(ids) and counts.failed > 0
            output = results(client, batch.output_file_id)
            failed = results(client, batch.error_file_id)
            assert {line["error"]["code"] for line in failed} == {"batch_expired"}
            assert [line["custom_id"] for line in output + failed] == ids
        finally:
            stop(service.process)


def test_batches_wait_while_live_traffic_is_high(tmp_path: Path, fake_upstream: Service) -> None:
    """With `yield_above_inflight: 1`, one live stream in flight holds every batch line."""
    with database("sqlite", tmp_path) as url:
        service = start_gateway(tmp_path, _config(fake_upstream, url, yield_above_inflight=1))
        try:
            client = _client(service, service.key)
            body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "x"}]}
            headers = {"Authorization": f"Bearer {service.key}"}
            with httpx.stream(
                "POST", service.base_url + "/chat/completions", json=body, headers=headers
            ) as live:
                chunks = live.iter_lines()  # kept: a dropped iterator closes the stream
                next(chunks)  # the live request is in flight
                batch_id = _start(client, [chat_line(f"{uuid.uuid4().hex}-{i}") for i in range(3)])
                time.sleep(2)
                held = client.batches.retrieve(batch_id)
                assert held.request_counts.completed == 0, held
                assert next(chunks) is not None  # and the live stream is still going
            batch = wait(client, batch_id)  # the stream is closed: the batch goes on
            assert batch.status == "completed" and batch.request_counts.completed == 3
        finally:
            stop(service.process)
