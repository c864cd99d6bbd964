"""The gateway's components, wired once, started and stopped with the server."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from savegate.cache import CacheBackend, MemoryCache
from savegate.composition import Providers, build_providers
from savegate.config import Config, RoutingConfig
from savegate.core.errors import GatewayError
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
from savegate.metering.rows import UsageInsert
from savegate.metering.sink import UsageSink
from savegate.observe.observer import build_observer, build_sidecar
from savegate.ops.health import Readiness
from savegate.routing.executor import Executor, RetryPolicy
from savegate.service.admin import KeyAdmin
from savegate.service.admission import Admission
from savegate.service.batch_calls import BatchCalls
from savegate.service.batch_job import JobTools, LineSlots
from savegate.service.batch_native import NativeBatches
from savegate.service.batch_runner import BatchRunner
from savegate.service.batches import BatchService
from savegate.service.cache import ResponseCache
from savegate.service.caches import Caches
from savegate.service.chat import ChatService
from savegate.service.completions import CompletionService
from savegate.service.embeddings import EmbeddingService
from savegate.service.files import FilesService
from savegate.service.media import MediaService
from savegate.service.pipeline import Pipeline
from savegate.service.purges import Purges
from savegate.service.responses import ResponsesService
from savegate.service.responses_native import NativeResponses
from savegate.store.batches import BatchStore
from savegate.store.blobs import BlobStore
from savegate.store.db import create_engine, create_schema
from savegate.store.files import FileStore
from savegate.store.responses import NativeResponseStore, ResponseStore
from savegate.store.usage import month_totals

if TYPE_CHECKING:
    from savegate.ops.reload import Reloader
    from savegate.service.semantic import SemanticCache

log = logging.getLogger(__name__)

# How long one process's claim on an upstream call holds others (in other processes)
# waiting for its answer, at most: a process that dies holding it delays them no longer.
CACHE_LOCK_SECONDS = 30.0


def retry_policy(routing: RoutingConfig) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=routing.max_attempts,
        attempt_timeout=routing.attempt_timeout_seconds,
        total_timeout=routing.total_timeout_seconds,
        backoff=routing.backoff_seconds,
        max_retry_after=routing.max_retry_after_seconds,
        continue_streams=routing.continue_streams,
    )


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
        self.usage_sink = UsageSink(
            self.engine,
            touch_keys=self.keys.touch,
            interval=config.usage.flush_seconds,
            capacity=config.usage.buffer_rows,
        )
        self.meter = Meter(PriceBook(config.prices), self.usage_sink)
        self.providers = build_providers(config, self.redactor, self.meter.quote)
        self.router = self.providers.router
        self.usage = UsageTotals(self.engine, self.usage_sink)
        self.usage_queries = UsageQueries(self.engine, self.usage_sink)
        self.alerts = AlertSender(config.alerts.webhook_url)
        self.budgets = self._ledger()
        self.sidecar = build_sidecar(config)
        self.observer = build_observer(
            config, self.router, self.usage_sink, metrics_dir, self.sidecar
        )
        self.meter.observer = self.observer
        # Several workers without Redis share exact rate limits through the database.
        shared = self.engine if config.server.processes > 1 else None
        self.rate_limiter = create_rate_limiter(config.redis_url, config.redis_prefix, shared)
        self.executor = Executor(self.router, retry_policy(config.routing))
        refused = self.observer.refused if self.observer is not None else None
        admission = Admission(self.rate_limiter, self.budgets, self.meter, refused)
        # Through the gateway: a reload swaps the router, and its aliases with it.
        canonical = lambda model: self.router.canonical(model)  # noqa: E731
        self.cache = Caches(self._cache(), self._semantic_cache(), canonical)
        pipeline = Pipeline(admission, self.executor, self.meter, self.cache)
        self.chat = ChatService(pipeline)
        self.completions = CompletionService(pipeline)
        self.embeddings = EmbeddingService(pipeline)
        self.media = MediaService(pipeline)
        retention = timedelta(days=self.config.responses.retention_days)
        self.response_store = ResponseStore(self.engine, retention)
        self.purges = Purges(self.response_store)
        # Through the gateway: a reload swaps the providers.
        self.native_responses = NativeResponses(
            NativeResponseStore(self.engine), lambda: self.providers.adapters
        )
        self.responses = ResponsesService(
            pipeline, self.chat, self.response_store, self.native_responses
        )
        self.key_admin = KeyAdmin(self.keys, self.auth, self.budgets)
        self.live_requests: Callable[[], int] = lambda: 0  # the HTTP surface tells
        self._files_and_batches()
        self.started_at = int(time.time())
        self.draining = False  # shutting down: in-flight work finishes, nothing new comes
        self.readiness = Readiness(self)
        self.reloader: Reloader | None = None  # set by `savegate serve`, which knows the file

    def apply(self, config: Config, providers: Providers) -> None:
        """A reload (`ops/reload.py`): requests from now on route, retry and are priced by
        `config` and `providers`; those in flight keep what they planned with."""
        self.config = config
        self.providers, self.router = providers, providers.router
        self.executor.swap(providers.router, retry_policy(config.routing))
        if self.observer is not None and self.observer.metrics is not None:
            self.observer.metrics.swap_router(providers.router)
        self.meter.reprice(PriceBook(config.prices))

    def _files_and_batches(self) -> None:
        config = self.config
        blobs = BlobStore(config.files_directory())
        self.files = FilesService(FileStore(self.engine), blobs, config.files.max_bytes)
        batches = config.batches
        tools = JobTools(
            BatchStore(self.engine),
            blobs,
            BatchCalls(self.chat, self.completions, self.embeddings, self.responses),
            self.keys,
            UsageInsert(self.engine.dialect),
            LineSlots(
                batches.concurrency, batches.yield_above_inflight, lambda: self.live_requests()
            ),
            BatchRunner.new_id(),
        )
        native = NativeBatches(
            lambda: self.providers, lambda: self.config, self.meter, self.budgets, self.keys, blobs
        )
        self.batch_runner = BatchRunner(tools, batches, native)
        self.batches = BatchService(
            tools.store, self.files, batches.window_seconds, self.batch_runner.wake, native
        )

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

    def _cache(self) -> ResponseCache:
        """The response cache, on only for the models and keys that ask for it."""
        config = self.config
        settings = config.cache
        backend: CacheBackend = MemoryCache(settings.ttl_seconds, settings.max_bytes)
        if settings.backend == "redis" and config.redis_url is not None:
            from savegate.cache.redis import RedisCache

            backend = RedisCache(
                config.redis_url,
                prefix=f"{config.redis_prefix}cache:",
                ttl=settings.ttl_seconds,
                lock_seconds=CACHE_LOCK_SECONDS,
            )
        wait = config.routing.total_timeout_seconds
        # Through the gateway: a reload swaps the router, and its aliases with it.
        canonical = lambda model: self.router.canonical(model)  # noqa: E731
        return ResponseCache(settings, backend, canonical, self.meter, wait)

    def _semantic_cache(self) -> SemanticCache | None:
        """The semantic cache, on only for the model groups that ask for it."""
        settings = self.config.cache
        semantic = settings.semantic
        if not semantic.groups:
            return None
        # Imported only here: numpy and the vector index cost a worker some 15 MB.
        from savegate.cache.semantic import SemanticStore
        from savegate.service.semantic import SemanticCache
        from savegate.store.semantic import SemanticTable

        store = SemanticStore(
            SemanticTable(self.engine),
            ttl=semantic.ttl_seconds,
            max_entries=semantic.max_entries,
            refresh=semantic.refresh_seconds,
        )
        model = semantic.embedding_model or self.config.local.name
        centre = semantic.embedding_model is None  # the embedded model's vectors need it
        wait = self.config.routing.total_timeout_seconds
        return SemanticCache(
            settings, store, self.executor, self.meter, model, centre=centre, wait=wait
        )

    async def start(self) -> None:
        await create_schema(self.engine)
        await self.auth.start()
        self.usage_sink.start()
        await self.sidecar.start()
        if self.observer is not None:
            await self.observer.start()
        for provider in self.providers.adapters:
            start = getattr(provider, "start", None)
            if start is not None:
                await start()
        try:
            self.cache.start()
        except GatewayError as exc:
            raise RuntimeError(f"cache.semantic.embedding_model: {exc.message}") from None
        self.batch_runner.start()
        self.purges.start()
        # What start-up built lives as long as the process: the cyclic garbage collector
        # need not scan it again on every full collection, which would pause requests.
        gc.freeze()

    async def stop(self) -> None:
        await self.batch_runner.stop()
        await self.purges.stop()
        await self.auth.stop()
        await self.usage_sink.close()
        if self.observer is not None:
            await self.observer.stop()
        await self.sidecar.close()  # the last access lines and spans
        await self.alerts.aclose()
        await self.rate_limiter.aclose()
        await self.budgets.aclose()
        await self.cache.aclose()
        await self.native_responses.aclose()
        await asyncio.gather(*(provider.aclose() for provider in self.providers.adapters))
        await asyncio.gather(*(http.aclose() for http in self.providers.transports))
        await self.readiness.aclose()
        await self.engine.dispose()
