"""Batches forwarded to the provider's own Batch API (`batch: native`), through the
`openai` SDK against a real gateway in front of the fake upstream's Files and Batch
APIs: the upstream's answers under the gateway's ids, usage rows with the batch
discount, exactly once across a restart, a forwarded cancel, upstream failures, the
hard budget checked up front, and batches that stay in the gateway."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.batch_helpers import chat_line, other_key, results, upload, wait
from tests.conftest import Service, start_fake_upstream, start_gateway, stop
from tests.stores import database, query

UPSTREAM_KEY = "sk-native-upstream-key"
# 10 prompt and 4 completion tokens a line (the fake), at $1 / $2 per 1M, half off.
LINE_COST = (10 * 1.0 + 4 * 2.0) / 1e6 * 0.5


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_fake_upstream(tmp_path_factory.mktemp("native-upstream"))
    yield service
    stop(service.process)


def _config(fake: Service, url: str) -> dict[str, Any]:
    os.environ["NATIVE_UPSTREAM_KEY"] = UPSTREAM_KEY
    return {
        "database_url": url,
        "local": {"enabled": False},
        "batches": {"poll_seconds": 0.2, "lease_seconds": 2},
        "prices": {"nb-upstream": {"input": 1.0, "output": 2.0}},
        "providers": {
            "up": {
                "base_url": fake.base_url,
                "api_key_env": "NATIVE_UPSTREAM_KEY",
                "models": [
                    {"name": "nb-model", "upstream": "nb-upstream"},
                    {"name": "nb-text", "upstream": "text-basic"},
                    "upstream-reject",
                    "upstream-fail",
                ],
                "batch": "native",
                "batch_discount": 0.5,
            },
            "plain": {"base_url": fake.base_url, "models": ["text-basic"]},
        },
    }


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, fake: Service
) -> Iterator[tuple[Service, str]]:
    workdir = tmp_path_factory.mktemp("native-gateway")
    with database("sqlite", workdir) as url:
        service = start_gateway(workdir, _config(fake, url))
        yield service, url
        stop(service.process)


def _client(service: Service, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(api_key=key or service.key, base_url=service.base_url, max_retries=0)


def _create(client: openai.OpenAI, lines: list[dict[str, Any]]) -> Any:
    return client.batches.create(
        input_file_id=upload(client, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )


def _upstream(fake: Service) -> dict[str, Any]:
    return dict(httpx.get(fake.url + "/_batches").json())


def _forwarded(fake: Service, before: set[str]) -> dict[str, Any]:
    """The one upstream batch created since `before` (ids of those that existed), once
    it is there."""
    found = wait_for(lambda: set(_upstream(fake)["batches"]) - before)
    assert len(found) == 1, found
    return dict(_upstream(fake)["batches"][found.pop()])


def wait_for(check: Any, timeout: float = 30) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return value


def _usage(url: str, batch_id: str) -> list[Any]:
    return query(
        url,
        "SELECT request_id, cost_usd, provider, requested_model, model FROM usage "
        "WHERE batch_id = :b",
        {"b": batch_id},
    )


def _release(fake: Service) -> None:
    httpx.get(fake.url + "/_batches/release").raise_for_status()


def test_a_forwarded_batch_completes_with_the_upstreams_answers(
    gateway: tuple[Service, str], fake: Service
) -> None:
    service, url = gateway
    client = _client(service)
    before = set(_upstream(fake)["batches"])
    batch = _create(client, [chat_line(f"n{i}", model="nb-model") for i in range(3)])
    upstream = _forwarded(fake, before)
    assert upstream["metadata"] == {"savegate_batch_id": batch.id}
    state = _upstream(fake)
    sent = state["files"][upstream["input_file_id"]]
    assert sent.count('"model":"nb-upstream"') == 3 and "nb-model" not in sent
    assert f"Bearer {UPSTREAM_KEY}" in state["authorization"]
    assert client.batches.retrieve(batch.id).status == "in_progress"
    _release(fake)
    done = wait(client, batch.id)
    assert done.status == "completed", done
    assert (done.request_counts.total, done.request_counts.completed) == (3, 3)
    assert done.output_file_id and done.output_file_id not in state["files"]
    output = results(client, done.output_file_id)
    answers = {line["custom_id"]: line["response"]["body"] for line in output}
    assert sorted(answers) == ["n0", "n1", "n2"]
    assert answers["n1"]["choices"][0]["message"]["content"] == "upstream batch answer to n1"
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"
    rows = _usage(url, batch.id)
    assert len(rows) == 3
    assert all(row[2:] == ("up", "nb-model", "nb-upstream") for row in rows)
    assert sum(row[1] for row in rows) == pytest.approx(3 * LINE_COST)
    assert done.usage.input_tokens == 30 and done.usage.output_tokens == 12


def test_the_upstreams_error_file_is_the_batchs(
    gateway: tuple[Service, str], fake: Service
) -> None:
    service, url = gateway
    client = _client(service)
    before = set(_upstream(fake)["batches"])
    lines = [chat_line("ok-1", model="nb-model"), chat_line("err-1", model="nb-model")]
    batch = _create(client, lines)
    _forwarded(fake, before)
    _release(fake)
    done = wait(client, batch.id)
    assert done.status == "completed", done
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    assert [line["custom_id"] for line in results(client, done.output_file_id)] == ["ok-1"]
    errors = results(client, done.error_file_id)
    assert [(e["custom_id"], e["response"]["status_code"]) for e in errors] == [("err-1", 400)]
    assert len(_usage(url, batch.id)) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_restart_while_the_upstream_runs_ingests_once(
    backend: str, tmp_path: Path, fake: Service
) -> None:
    with database(backend, tmp_path) as url:
        config = _config(fake, url)
        first = start_gateway(tmp_path, config)
        try:
            client = _client(first)
            before = set(_upstream(fake)["batches"])
            batch = _create(client, [chat_line(f"r{i}", model="nb-model") for i in range(4)])
            _forwarded(fake, before)
            # Cut once the gateway has recorded the upstream batch it follows.
            sql = "SELECT upstream_batch_id FROM batches WHERE id = :b"
            wait_for(lambda: query(url, sql, {"b": batch.id})[0][0])
        finally:
            stop(first.process)
        # As if cut between creating the upstream batch and recording it: it is found
        # again by its tag, not created twice.
        query(url, "UPDATE batches SET upstream_batch_id = NULL WHERE id = :b", {"b": batch.id})
        _release(fake)
        second = start_gateway(tmp_path, config, name="gateway-again")
        try:
            client = _client(second, first.key)
            done = wait(client, batch.id)
            assert done.status == "completed", done
            assert len(results(client, done.output_file_id)) == 4
        finally:
            stop(second.process)
        third = start_gateway(tmp_path, config, name="gateway-third")
        try:
            assert _client(third, first.key).batches.retrieve(batch.id).status == "completed"
        finally:
            stop(third.process)
        assert len(set(_upstream(fake)["batches"]) - before) == 1
        rows = _usage(url, batch.id)
        assert len(rows) == 4 and len({row[0] for row in rows}) == 4


def test_cancel_is_forwarded(gateway: tuple[Service, str], fake: Service) -> None:
    service, url = gateway
    client = _client(service)
    before = set(_upstream(fake)["batches"])
    batch = _create(client, [chat_line("c0", model="nb-model")])
    upstream = _forwarded(fake, before)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling"
    done = wait(client, batch.id)
    assert done.status == "cancelled", done
    assert upstream["id"] in _upstream(fake)["cancels"]
    assert _usage(url, batch.id) == []


@pytest.mark.parametrize("model", ["upstream-reject", "upstream-fail"])
def test_an_upstream_failure_fails_the_batch(
    gateway: tuple[Service, str], fake: Service, model: str
) -> None:
    service, _ = gateway
    client = _client(service)
    before = set(_upstream(fake)["batches"])
    batch = _create(client, [chat_line("f0", model=model)])
    if model == "upstream-fail":
        _forwarded(fake, before)
        _release(fake)
    done = wait(client, batch.id)
    assert done.status == "failed", done
    assert done.errors is not None and done.errors.data
    assert done.errors.data[0].message


def test_a_hard_budget_refuses_the_batch_up_front(gateway: tuple[Service, str]) -> None:
    service, _ = gateway
    key = other_key(service, monthly_budget_usd=0.001, budget_mode="hard")
    client = _client(service, key)
    file_id = upload(client, [chat_line(f"b{i}", model="nb-model") for i in range(3)])
    with pytest.raises(openai.RateLimitError) as refused:
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert refused.value.code == "insufficient_quota"


def test_mixed_providers_run_in_the_gateway(gateway: tuple[Service, str], fake: Service) -> None:
    service, url = gateway
    client = _client(service)
    before = set(_upstream(fake)["batches"])
    batch = _create(client, [chat_line("m0", model="nb-text"), chat_line("m1")])
    done = wait(client, batch.id)
    assert done.status == "completed", done
    assert done.request_counts.completed == 2
    assert set(_upstream(fake)["batches"]) == before
    assert len(_usage(url, batch.id)) == 2


def test_batch_native_needs_an_openai_provider() -> None:
    from pydantic import ValidationError

    from savegate.config import ProviderConfig

    base = {"base_url": "http://127.0.0.1:1/v1", "models": ["m"], "batch": "native"}
    assert ProviderConfig.model_validate(base).batch == "native"
    with pytest.raises(ValidationError, match="batch: native"):
        ProviderConfig.model_validate({**base, "type": "anthropic"})


def test_models_the_key_may_not_use_stay_in_the_gateway(
    gateway: tuple[Service, str], fake: Service
) -> None:
    service, _ = gateway
    client = _client(service, other_key(service, allowed_models=["text-basic"]))
    before = set(_upstream(fake)["batches"])
    done = wait(client, _create(client, [chat_line("a0", model="nb-model")]).id)
    assert done.status == "completed", done
    assert set(_upstream(fake)["batches"]) == before
    errors = results(client, done.error_file_id)
    assert errors[0]["response"]["body"]["error"]["code"] == "model_not_allowed"
