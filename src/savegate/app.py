"""The gateway's components, wired once, started and stopped with the server."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from savegate.composition import build_providers
from savegate.config import Config
from savegate.core.redact import Redactor
from savegate.keys.auth import Authenticator
from savegate.keys.store import KeyStore
from savegate.limits.ledger import Ledger, MemoryLedger, SharedLedger
from savegate.limits.ledger.database import DatabaseStore
from savegate.limits.ledger.store import LedgerStore
from savegate.limits.rate import create_rate_limiter
from savegate.metering.alerts import AlertSender
from savegate.metering.meter import Meter
from savegate.metering.prices import PriceBook
from savegate.metering.queries import UsageQueries, UsageTotals
from savegate.metering.sink import UsageSink
from savegate.observe.observer import build_observer
from savegate.routing.executor import Executor, RetryPolicy
from savegate.service.admin import KeyAdmin
from savegate.service.admission import Admission
from savegate.service.chat import ChatService
from savegate.service.completions import CompletionService
from savegate.service.embeddings import EmbeddingService
from savegate.service.pipeline import Pipeline
from savegate.service.responses import ResponsesService
from savegate.store.db import create_engine, create_schema
from savegate.store.responses import ResponseStore
from savegate.store.usage import month_totals

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, config: Config, metrics_dir: str | None = None) -> None:
        """`metrics_dir`: where the workers of one run share their metrics."""
        self.config = config
        # Masks the upstream keys in what comes back from upstreams (and, installed by
        # `savegate serve`, in every log record).
        self.redactor = Redactor(config.upstream_secrets())
        self.engine = create_engine(config.resolved_database_url())
        self.keys = KeyStore(self.engine)
        self.auth = Authenticator(self.keys, config.keys_refresh_seconds)
        self.providers = build_providers(config, self.redactor)
        self.router = self.providers.router
        self.usage_sink = UsageSink(
            self.engine,
            touch_keys=self.keys.touch,
            interval=config.usage.flush_seconds,
            capacity=config.usage.buffer_rows,
        )
        self.usage = UsageTotals(self.engine, self.usage_sink)
        self.usage_queries = UsageQueries(self.engine, self.usage_sink)
        self.alerts = AlertSender(config.alerts.webhook_url)
        self.budgets = self._ledger()
        self.observer = build_observer(config, self.router, self.usage_sink, metrics_dir)
        self.meter = Meter(PriceBook(config.prices), self.usage_sink, self.observer)
        # Several workers without Redis share exact rate limits through the database.
        shared = self.engine if config.server.processes > 1 else None
        self.rate_limiter = create_rate_limiter(config.redis_url, config.redis_prefix, shared)
        routing = config.routing
        self.executor = Executor(
            self.router,
            RetryPolicy(
                max_attempts=routing.max_attempts,
                attempt_timeout=routing.attempt_timeout_seconds,
                total_timeout=routing.total_timeout_seconds,
                backoff=routing.backoff_seconds,
                max_retry_after=routing.max_retry_after_seconds,
                continue_streams=routing.continue_streams,
            ),
        )
        refused = self.observer.refused if self.observer is not None else None
        admission = Admission(self.rate_limiter, self.budgets, self.meter, refused)
        pipeline = Pipeline(admission, self.executor, self.meter)
        self.chat = ChatService(pipeline)
        self.completions = CompletionService(pipeline)
        self.embeddings = EmbeddingService(pipeline)
        self.response_store = ResponseStore(self.engine)
        self.responses = ResponsesService(pipeline, self.chat, self.response_store)
        self.key_admin = KeyAdmin(self.keys, self.auth, self.budgets)
        self.started_at = int(time.time())
        self.draining = False  # shutting down: in-flight work finishes, nothing new comes

    def _ledger(self) -> Ledger:
        """Budgets are exact across processes: in Redis when there is one, else in the
        database when more than one process may use it (several workers, or PostgreSQL,
        which replicas share), else in this process's memory."""
        config = self.config
        shared = config.server.processes > 1 or self.engine.url.get_backend_name() != "sqlite"
        if config.redis_url is None and not shared:
            return MemoryLedger(self.usage.month, self.alerts)
        return SharedLedger(
            self._ledger_store(),
            lambda key_id, since, excluding: month_totals(self.engine, key_id, since, excluding),
            self.alerts,
            # A hold outlives a dead process by no more than the longest request.
            lease=config.routing.total_timeout_seconds + 60,
            # A rebuild waits until every process has written the usage it buffered.
            rebuild_wait=2 * config.usage.flush_seconds + 0.5,
        )

    def _ledger_store(self) -> LedgerStore:
        if self.config.redis_url is None:
            return DatabaseStore(self.engine)
        # Imported here so that the redis package is needed only when Redis is configured.
        from savegate.limits.ledger.redis import RedisStore

        return RedisStore(self.config.redis_url, prefix=f"{self.config.redis_prefix}budget:")

    async def start(self) -> None:
        await create_schema(self.engine)
        await self.auth.start()
        self.usage_sink.start()
        if self.observer is not None:
            await self.observer.start()
        for provider in self.providers.adapters:
            start = getattr(provider, "start", None)
            if start is not None:
                await start()
        # What start-up built lives as long as the process: the cyclic garbage collector
        # need not scan it again on every full collection, which would pause requests.
        gc.freeze()

    async def stop(self) -> None:
        await self.auth.stop()
        await self.usage_sink.close()
        if self.observer is not None:
            await self.observer.stop()
        await self.alerts.aclose()
        await self.rate_limiter.aclose()
        await self.budgets.aclose()
        await asyncio.gather(*(provider.aclose() for provider in self.providers.adapters))
        await asyncio.gather(*(http.aclose() for http in self.providers.transports))
        await self.engine.dispose()
