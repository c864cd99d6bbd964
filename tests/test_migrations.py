"""Schema migrations run on start and keep the data of older versions."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import openai
import pytest
from alembic import command
from sqlalchemy import text

from savegate.store.db import alembic_config, create_engine, migration_heads
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
            assert version == "0013"
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


def test_heads_read_from_the_files_are_alembics():
    from alembic.script import ScriptDirectory

    from savegate.store.db import MIGRATIONS

    assert migration_heads() == set(ScriptDirectory(str(MIGRATIONS)).get_heads())


_START = """
import asyncio, sys
from savegate.store.db import create_engine, create_schema
engine = create_engine(sys.argv[1])
asyncio.run(create_schema(engine))
print("alembic" in sys.modules)
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_start_on_the_newest_schema_never_imports_alembic(backend, tmp_path):
    """Alembic and Mako cost a worker about 10 MB: loaded only when a migration runs."""
    with database(backend, tmp_path) as url:
        runs = [
            subprocess.run(
                [sys.executable, "-c", _START, url], capture_output=True, text=True, check=True
            ).stdout.split()
            for _ in range(2)
        ]
        assert runs == [["True"], ["False"]]
        assert {row[0] for row in query(url, "SELECT version_num FROM alembic_version")} == (
            migration_heads()
        )


def _at_revision_0006_with_usage(url: str) -> None:
    async def go() -> None:
        engine = create_engine(url)
        async with engine.begin() as connection:
            await connection.run_sync(lambda c: command.upgrade(alembic_config(c), "0006"))
            await connection.execute(
                text(
                    "INSERT INTO usage (request_id, key_id, created_at, endpoint, "
                    "requested_model, prompt_tokens, cached_tokens, completion_tokens, "
                    "reasoning_tokens, cost_usd, list_cost_usd, stream, status, cache_hit, "
                    "client_disconnected, estimated) VALUES ('req_old', 'key_old', "
                    "CURRENT_TIMESTAMP, 'chat', 'gpt-4o', 100, 0, 10, 0, 0.00015, 0.0002, "
                    "false, 200, false, false, false)"
                )
            )
        await engine.dispose()

    asyncio.run(go())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_savings_by_source_keep_older_rows_adding_up(backend, tmp_path, fake_upstream: Service):
    with database(backend, tmp_path) as url:
        (tmp_path / "data").mkdir(exist_ok=True)
        _at_revision_0006_with_usage(url)
        config = {
            "database_url": url,
            "local": {"enabled": False},
            "providers": {"fake": {"base_url": fake_upstream.base_url, "models": ["*"]}},
        }
        service = start_gateway(tmp_path, config)
        stop(service.process)
        (row,) = query(
            url,
            "SELECT cost_usd, list_cost_usd, cache_write_tokens, saving_discount_usd, "
            "saving_cache_usd, saving_semantic_usd, saving_prompt_cache_usd, saving_route_usd "
            "FROM usage WHERE request_id = 'req_old'",
        )
        cost, listed, written, discount, *others = row
        # Until 0007 a provider discount was the only saving there was.
        assert written == 0 and others == [0, 0, 0, 0]
        assert discount == pytest.approx(listed - cost, abs=1e-15)

        async def back_to_0006() -> None:
            engine = create_engine(url)
            async with engine.begin() as connection:
                await connection.run_sync(lambda c: command.downgrade(alembic_config(c), "0006"))
            await engine.dispose()

        asyncio.run(back_to_0006())
        (kept,) = query(url, "SELECT cost_usd, list_cost_usd FROM usage")
        assert tuple(kept) == (cost, listed)
        assert query(url, "SELECT version_num FROM alembic_version")[0][0] == "0006"
