"""Readiness: whether this process should be sent requests now.

Ready means: start-up finished (providers built and started), the database answers,
Redis answers when one is configured, the embedded model's process serves when it is
to answer every model name (eager), and the process is not draining. Probes come often
and from every load balancer: the checks' result is kept for `CACHE_SECONDS`, and probes
that arrive while a check runs wait for that one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sqlalchemy import text

from savegate.providers.local import LocalProvider

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from savegate.app import Gateway

log = logging.getLogger(__name__)

CACHE_SECONDS = 1.0
CHECK_TIMEOUT = 2.0  # seconds one dependency may take to answer
OK = "ok"


class Readiness:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self.started = False  # set once the lifespan start-up completed
        self._redis: Redis | None = None
        self._checked: tuple[float, dict[str, str]] | None = None
        self._running: asyncio.Task[dict[str, str]] | None = None

    async def check(self) -> tuple[bool, dict[str, str]]:
        """(ready, each check's result: "ok" or what is wrong)."""
        if self._gateway.draining:
            return False, {"draining": "the process is shutting down"}
        now = time.monotonic()
        if self._checked is None or now - self._checked[0] > CACHE_SECONDS:
            if self._running is None or self._running.done():
                self._running = asyncio.create_task(self._run())
            self._checked = (now, await asyncio.shield(self._running))
        results = self._checked[1]
        return all(result == OK for result in results.values()), results

    async def _run(self) -> dict[str, str]:
        checks: dict[str, Callable[[], Awaitable[str]]] = {
            "startup": self._startup,
            "database": self._database,
            "providers": self._providers,
        }
        if self._gateway.config.redis_url is not None:
            checks["redis"] = self._redis_ping
        if self._eager_local() is not None:
            checks["embedded_model"] = self._embedded_model
        results = await asyncio.gather(*(_bounded(name, check) for name, check in checks.items()))
        return dict(zip(checks, results, strict=True))

    async def _startup(self) -> str:
        return OK if self.started else "still starting"

    async def _database(self) -> str:
        async with self._gateway.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return OK

    async def _redis_ping(self) -> str:
        if self._redis is None:
            from redis.asyncio import Redis  # only needed when Redis is configured

            url = self._gateway.config.redis_url or ""
            self._redis = Redis.from_url(
                url, socket_timeout=CHECK_TIMEOUT, socket_connect_timeout=CHECK_TIMEOUT
            )
        await self._redis.ping()
        return OK

    async def _providers(self) -> str:
        if not self._gateway.providers.adapters:
            return "no provider configured and the embedded model is disabled"
        return OK

    def _eager_local(self) -> LocalProvider | None:
        local = self._gateway.providers.local
        return local if isinstance(local, LocalProvider) and local.eager else None

    async def _embedded_model(self) -> str:
        local = self._eager_local()
        return OK if local is None or local.process.serving else "its process is not serving"

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


async def _bounded(name: str, check: Callable[[], Awaitable[str]]) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return await check()
    except TimeoutError:
        return f"no answer in {CHECK_TIMEOUT:.0f} s"
    except Exception as exc:
        log.warning("readiness: %s unreachable: %s", name, exc)
        return f"unreachable ({type(exc).__name__})"
