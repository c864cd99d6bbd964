"""Schema migrations run on start and keep the data of older versions."""

from __future__ import annotations

import asyncio
import threading

import openai
import pytest
from alembic import command
from sqlalchemy import text

from savegate.store.db import alembic_config, create_engine
from tests.conftest import Service, start_gateway, stop
from tests.stores import database, query


def _at_first_revision(url: str) -> None:
    async def go() -> None:
        engine = create_engine(url)
        async with engine.begin() as connection:
            await connection.run_sync(lambda c: command.upgrade(alembic_config(c), "0001"))
            await connection.execute(
                text(
                    "INSERT INTO api_keys (id, name, secret_hash, hint, is_admin, created_at, "
                    "budget_mode) VALUES ('key_old', 'old', :hash, 'abcd', false, "
                    "CURRENT_TIMESTAMP, 'hard')"
                ),
                {"hash": "0" * 64},
            )
        await engine.dispose()

    asyncio.run(go())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_upgrade_from_first_revision_keeps_keys(backend, tmp_path, fake_upstream: Service):
    with database(backend, tmp_path) as url:
        (tmp_path / "data").mkdir(exist_ok=True)
        _at_first_revision(url)
        config = {
            "database_url": url,
            "local": {"enabled": False},
            "providers": {"fake": {"base_url": fake_upstream.base_url, "models": ["*"]}},
        }
        service = start_gateway(tmp_path, config)
        try:
            # The store was not empty, so no keys were created at start.
            assert service.keys == {}
            (version,) = query(url, "SELECT version_num FROM alembic_version")[0]
            assert version == "0010"
            (name,) = query(url, "SELECT name FROM api_keys WHERE id = 'key_old'")[0]
            assert name == "old"
            client = openai.OpenAI(api_key="sk-savegate-" + "q" * 32, base_url=service.base_url)
            with pytest.raises(openai.AuthenticationError):
                client.models.list()
        finally:
            stop(service.process)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_replicas_starting_together_on_an_empty_database_all_serve(
    backend, tmp_path, fake_upstream: Service
):
    with database(backend, tmp_path) as url:
        config = {
            "database_url": url,
            "local": {"enabled": False},
            "providers": {"fake": {"base_url": fake_upstream.base_url, "models": ["*"]}},
        }
        replicas: list[Service] = []
        threads = [
            threading.Thread(
                target=lambda i=i: replicas.append(
                    start_gateway(tmp_path / f"replica-{i}", config, name=f"replica-{i}")
                )
            )
            for i in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=180)
        try:
            assert len(replicas) == 3, "a replica did not come up"
            printed = [replica.keys for replica in replicas if replica.keys]
            assert len(printed) == 1  # the first-start keys are made once, by one of them
            for replica in replicas:
                client = openai.OpenAI(api_key=printed[0]["default"], base_url=replica.base_url)
                answer = client.chat.completions.create(
                    model="text-basic", messages=[{"role": "user", "content": "hi"}]
                )
                assert answer.choices[0].message.content
            (keys,) = query(url, "SELECT count(*) FROM api_keys")[0]
            assert keys == 2
        finally:
            for replica in replicas:
                stop(replica.process)
