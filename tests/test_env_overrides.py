"""SAVEGATE_DATABASE_URL and SAVEGATE_REDIS_URL: the store URLs, passwords and all, from
the environment instead of the config file, and their passwords never in a log line."""

from __future__ import annotations

import httpx
import redis

from tests.cluster import PrivateRedis
from tests.conftest import Service, start_gateway, stop
from tests.stores import database, query

MESSAGES = [{"role": "user", "content": "hello"}]
REDIS_PASSWORD = "redis-pass-7f3a9c"
PG_PASSWORD = "pg-pass-2b8e41"  # the machine's PostgreSQL trusts 127.0.0.1: never checked


def test_store_urls_from_the_environment(tmp_path, fake_upstream: Service):
    store = PrivateRedis(tmp_path, password=REDIS_PASSWORD)
    store.start()
    with database("postgres", tmp_path) as url:
        env = {
            "SAVEGATE_DATABASE_URL": url.replace("postgres@", f"postgres:{PG_PASSWORD}@"),
            "SAVEGATE_REDIS_URL": store.url,
        }
        config = {
            "server": {"log_level": "debug"},
            "local": {"enabled": False},
            "redis_prefix": "envtest:",
            "providers": {"fake": {"base_url": fake_upstream.base_url, "models": ["*"]}},
        }
        service = start_gateway(tmp_path / "gw", config, env=env)
        try:
            admin = {"Authorization": f"Bearer {service.keys['admin']}"}
            created = httpx.post(
                service.url + "/admin/keys", json={"name": "limited", "rpm": 2}, headers=admin
            )
            assert created.status_code == 201, created.text
            user = {"Authorization": f"Bearer {created.json()['secret']}"}
            body = {"model": "text-basic", "messages": MESSAGES}
            statuses = [
                httpx.post(service.base_url + "/chat/completions", json=body, headers=user)
                for _ in range(3)
            ]
            assert [r.status_code for r in statuses] == [200, 200, 429]
            # The keys live in this PostgreSQL database, the rate windows in this Redis.
            assert {row[0] for row in query(url, "SELECT name FROM api_keys")} == {
                "admin",
                "default",
                "limited",
            }
            client = redis.Redis.from_url(store.url)
            assert list(client.scan_iter("envtest:*"))
            client.close()
        finally:
            stop(service.process)
            store.stop()
        log = service.output()
        assert "DEBUG" in log
        assert REDIS_PASSWORD not in log and PG_PASSWORD not in log
