"""The store URLs' environment overrides, and their passwords among the masked secrets."""

from __future__ import annotations

import pytest

from savegate.config import ConfigError, load_config


def test_environment_overrides_the_file(tmp_path):
    path = tmp_path / "savegate.yaml"
    path.write_text("redis_url: redis://file:6379/0\ndatabase_url: sqlite+aiosqlite:///x.db\n")
    env = {"SAVEGATE_REDIS_URL": "redis://:s%40cret-pass@redis:6379/1", "SAVEGATE_DATABASE_URL": ""}
    config = load_config(str(path), env)
    assert config.redis_url == "redis://:s%40cret-pass@redis:6379/1"
    assert config.database_url == "sqlite+aiosqlite:///x.db"  # empty: not set
    assert "s@cret-pass" in config.upstream_secrets()


def test_environment_alone_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = "postgresql+asyncpg://savegate:pg-password@db:5432/savegate"
    config = load_config(None, {"SAVEGATE_DATABASE_URL": url})
    assert config.database_url == url
    assert "pg-password" in config.upstream_secrets()


def test_the_metrics_port_is_not_the_main_one(tmp_path):
    path = tmp_path / "savegate.yaml"
    path.write_text("server: {port: 8123}\nmetrics: {port: 8123}\n")
    with pytest.raises(ConfigError, match=r"metrics\.port must differ from server\.port"):
        load_config(str(path), {})
