"""Stored responses age out after `responses.retention_days`: not read back from then on,
and their rows purged by the gateway, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import openai
import pytest

from tests.conftest import Service, start_gateway, stop
from tests.stores import database, query

RETENTION_SECONDS = 4.0


def _client(service: Service) -> openai.OpenAI:
    return openai.OpenAI(api_key=service.key, base_url=service.base_url, max_retries=0)


def _rows(url: str) -> set[str]:
    return {row[0] for row in query(url, "SELECT id FROM responses")}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_response_past_its_retention_is_gone_then_purged(backend, tmp_path, fake_upstream):
    with database(backend, tmp_path) as url:
        config = {
            "database_url": url,
            "local": {"enabled": False},
            "providers": {"fake": {"base_url": fake_upstream.base_url, "models": ["*"]}},
            "responses": {"retention_days": RETENTION_SECONDS / 86400},
        }
        service = start_gateway(tmp_path, config)
        try:
            client = _client(service)
            first = client.responses.create(model="text-basic", input="Weather?")
            made = time.monotonic()
            assert client.responses.retrieve(first.id).id == first.id
            follow_up = client.responses.create(
                model="text-basic", input="And tomorrow?", previous_response_id=first.id
            )
            assert follow_up.status == "completed"
            assert {first.id, follow_up.id} <= _rows(url)

            time.sleep(max(0.0, made + RETENTION_SECONDS + 0.5 - time.monotonic()))
            with pytest.raises(openai.NotFoundError):
                client.responses.retrieve(first.id)
            with pytest.raises(openai.NotFoundError) as refused:
                client.responses.create(
                    model="text-basic", input="Again?", previous_response_id=first.id
                )
            assert refused.value.code == "previous_response_not_found"

            fresh = client.responses.create(model="text-basic", input="Still there?")
            deadline = time.monotonic() + 10
            while first.id in _rows(url) and time.monotonic() < deadline:
                time.sleep(0.2)
            rows = _rows(url)
            assert first.id not in rows and fresh.id in rows  # the young one stays
            assert client.responses.retrieve(fresh.id).id == fresh.id
        finally:
            stop(service.process)
