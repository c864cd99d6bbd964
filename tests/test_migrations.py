"""Schema migrations run on start and keep the data of older versions."""

from __future__ import annotations

import asyncio

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
            assert version == "0003"
            (name,) = query(url, "SELECT name FROM api_keys WHERE id = 'key_old'")[0]
            assert name == "old"
            client = openai.OpenAI(api_key="sk-savegate-" + "q" * 32, base_url=service.base_url)
            with pytest.raises(openai.AuthenticationError):
                client.models.list()
        finally:
            stop(service.process)
