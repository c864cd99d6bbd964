"""The semantic cache across processes and over time: two gateways on one database
(SQLite and PostgreSQL), entries that expire and a table bounded in rows; embeddings from
a configured model routed like any call (priced, on the internal key), or from none."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import Service, free_port, start_gateway, stop, stop_model
from tests.stores import database, query
from tests.test_semantic_cache import (
    NEAR,
    OTHER,
    QUESTION,
    SAME_TEXT,
    ask,
    body,
    state,
    upstream_calls,
)

REFRESH = 0.2


def _config(fake: Service, *, local: bool = True, **semantic: object) -> dict:
    os.environ.setdefault("FAKE_UPSTREAM_KEY", "sk-fake-upstream-key")
    return {
        "local": {"enabled": local},
        "usage": {"flush_seconds": 0.1},
        "cache": {
            "semantic": {
                "groups": ["text-*"],
                "threshold": 0.9,
                "refresh_seconds": REFRESH,
                **semantic,
            }
        },
        "providers": {
            "fake": {
                "base_url": fake.base_url,
                "api_key_env": "FAKE_UPSTREAM_KEY",
                "models": ["*"],
            }
        },
    }


def _rows(url: str) -> int:
    return int(query(url, "SELECT count(*) FROM semantic_cache")[0][0])


def _wait_rows(url: str, count: int) -> None:
    """Until the table holds `count` rows; then long enough for every process to read
    them (a few refresh rounds)."""
    deadline = time.monotonic() + 30
    while _rows(url) != count:
        assert time.monotonic() < deadline, f"{_rows(url)} rows, not {count}"
        time.sleep(0.05)
    time.sleep(10 * REFRESH)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_gateways_share_hits_through_one_database(
    backend: str, tmp_path: Path, fake_upstream: Service
):
    with database(backend, tmp_path) as url:
        config = {**_config(fake_upstream), "database_url": url}
        # One data directory: one model process embeds for both.
        first = start_gateway(tmp_path, config, name="a")
        second = start_gateway(tmp_path, config, name="b")
        second.keys = first.keys
        try:
            seed = 10 if backend == "sqlite" else 11
            assert state(ask(first, body(QUESTION, seed))[0]) == ("miss", None)
            _wait_rows(url, 1)
            headers, _ = ask(second, body(NEAR[0], seed))
            assert state(headers) == ("hit", "semantic")
            assert state(ask(second, body(OTHER, seed))[0]) == ("miss", None)
            _wait_rows(url, 2)
            assert state(ask(first, body(OTHER.upper(), seed))[0]) == ("hit", "semantic")
            assert upstream_calls(fake_upstream, seed) == 2
        finally:
            stop(first.process)
            stop(second.process)
            stop_model(tmp_path / "data")


def test_entries_expire(tmp_path: Path, fake_upstream: Service):
    service = start_gateway(tmp_path, _config(fake_upstream, ttl_seconds=2))
    try:
        seed = 12
        assert state(ask(service, body(QUESTION, seed))[0]) == ("miss", None)
        assert state(ask(service, body(SAME_TEXT, seed))[0]) == ("hit", "semantic")
        time.sleep(2.5)
        assert state(ask(service, body(SAME_TEXT, seed))[0]) == ("miss", None)
        assert upstream_calls(fake_upstream, seed) == 2
    finally:
        stop(service.process)
        stop_model(tmp_path / "data")


def test_the_table_keeps_the_newest_max_entries(tmp_path: Path, fake_upstream: Service):
    with database("sqlite", tmp_path) as url:
        service = start_gateway(tmp_path, _config(fake_upstream, max_entries=2))
        try:
            seed = 13
            for question in (QUESTION, OTHER, "What is 2 + 2?"):
                assert state(ask(service, body(question, seed))[0]) == ("miss", None)
            _wait_rows(url, 2)  # the oldest deleted, here and in the table
            assert state(ask(service, body(QUESTION.upper(), seed))[0]) == ("miss", None)
            assert state(ask(service, body("WHAT IS 2 + 2?", seed))[0]) == ("hit", "semantic")
        finally:
            stop(service.process)
            stop_model(tmp_path / "data")


def test_a_configured_embedding_model_is_routed_priced_and_internal(
    tmp_path: Path, fake_upstream: Service
):
    config = _config(fake_upstream, local=False, embedding_model="emb-priced")
    config["prices"] = {"emb-priced": {"input": 100.0, "output": 0.0}}
    config["cache"]["models"] = ["*"]  # the exact cache too: asked first, both keep a miss
    service = start_gateway(tmp_path, config)
    try:
        seed = 3
        first, _ = ask(service, body(QUESTION, seed))
        assert state(first) == ("miss", None)
        assert state(ask(service, body(QUESTION, seed))[0]) == ("hit", None)  # the exact one
        assert state(ask(service, body("  WHAT is the capital of France?", seed))[0]) == (
            "hit",
            "semantic",
        )
        assert upstream_calls(fake_upstream, seed) == 1
        log = httpx.get(fake_upstream.url + "/_log").json()["requests"]
        embedded = [r["body"] for r in log if r["body"].get("model") == "emb-priced"]
        # What is compared: the normalised text (the same text again is not embedded).
        assert embedded[-1]["input"] == ["what is the capital of france?"]
        headers = {"Authorization": f"Bearer {service.keys['admin']}"}
        rows = httpx.get(
            service.url + "/admin/usage/requests",
            params={"key_id": "savegate-semantic-cache"},
            headers=headers,
        ).json()["data"]
        (row,) = [r for r in rows if r["request_id"] == first["x-request-id"]]
        assert row["endpoint"] == "embeddings" and row["provider"] == "fake"
        assert row["prompt_tokens"] == 6  # the fake counts words
        assert row["cost_usd"] == pytest.approx(6 * 100.0 / 1e6)
    finally:
        stop(service.process)


def test_no_embedding_bypasses_the_semantic_cache_not_the_request(
    tmp_path: Path, fake_upstream: Service
):
    config = _config(fake_upstream, local=False, embedding_model="dead-embed")
    config["providers"]["dead"] = {
        "base_url": f"http://127.0.0.1:{free_port()}/v1",  # nothing listens there
        "models": ["dead-embed"],
    }
    config["routing"] = {"max_attempts": 1}
    service = start_gateway(tmp_path, config)
    try:
        for _ in range(2):
            headers, answer = ask(service, body(QUESTION, 4))
            assert state(headers) == ("bypass", None)
            assert answer["choices"]
        assert "semantic cache: no embedding from dead-embed" in service.output()
    finally:
        stop(service.process)


def test_past_max_inflight_requests_bypass_rather_than_wait(tmp_path: Path, fake_upstream: Service):
    # The fake holds a call to `slow-json` until it is cut: the first request's embedding
    # is in flight for its whole attempt timeout.
    config = _config(fake_upstream, local=False, embedding_model="slow-json", max_inflight=1)
    config["routing"] = {"max_attempts": 1, "attempt_timeout_seconds": 5}
    service = start_gateway(tmp_path, config)
    try:
        seed = 5

        def embedding_calls() -> int:
            log = httpx.get(fake_upstream.url + "/_log").json()["requests"]
            return sum(1 for r in log if r["body"].get("model") == "slow-json")

        before = embedding_calls()
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(ask, service, body(QUESTION, seed))
            deadline = time.monotonic() + 30
            while embedding_calls() == before:  # the first request's embedding is held
                assert time.monotonic() < deadline
                time.sleep(0.02)
            headers, answer = ask(service, body(OTHER, seed))
            assert state(headers) == ("bypass", None) and answer["choices"]
            assert embedding_calls() == before + 1  # it did not even ask
            headers, _ = first.result(timeout=60)
        assert state(headers) == ("bypass", None)  # its embedding timed out
        assert upstream_calls(fake_upstream, seed) == 2
    finally:
        stop(service.process)
