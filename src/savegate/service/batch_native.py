"""Which batches go to their provider's own Batch API (`batch: native`), and what that
needs besides the upstream itself: the models renamed, the budget checked before the
batch is forwarded, and the key charged when its results arrive.

A batch is forwarded when every line's model routes (the first deployment of its plan)
to one provider with `batch: native`; anything else runs in the gateway.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from savegate.composition import Providers
from savegate.config import Config
from savegate.core.errors import GatewayError, PermissionDenied
from savegate.core.keys import ApiKey
from savegate.core.route import Target
from savegate.core.tokens import prompt_bound
from savegate.keys.store import KeyStore
from savegate.limits.ledger import Ledger, limited
from savegate.metering.meter import Meter
from savegate.metering.record import UsageRecord
from savegate.providers.openai_compat import OpenAICompatProvider
from savegate.providers.openai_compat.batches import UpstreamBatches
from savegate.service.admission import DEFAULT_OUTPUT_CAP, max_output
from savegate.store.blobs import BlobStore
from savegate.wire.batch import LineError, blank, parse_line

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Forward:
    """Where a batch's lines go: one provider, and each public model's target there."""

    provider: str
    targets: dict[str, Target]


class NativeBatches:
    def __init__(
        self,
        providers: Callable[[], Providers],
        config: Callable[[], Config],
        meter: Meter,
        budgets: Ledger,
        keys: KeyStore,
        blobs: BlobStore,
    ) -> None:
        # Callables: a reload swaps the providers and the config.
        self._providers = providers
        self._config = config
        self.meter = meter
        self._budgets = budgets
        self._keys = keys
        self._blobs = blobs

    @property
    def poll_seconds(self) -> float:
        return self._config().batches.poll_seconds

    def _enabled(self) -> bool:
        return any(p.batch == "native" for p in self._config().providers.values())

    def forward(self, models: Iterable[str]) -> Forward | None:
        """The one native provider all of `models` route to, or None."""
        router, providers = self._providers().router, self._config().providers
        found: str | None = None
        targets: dict[str, Target] = {}
        for model in models:
            try:
                target = router.plan(model)[0].route.target
            except GatewayError:
                return None
            config = providers.get(target.provider)
            if config is None or config.batch != "native" or found not in (None, target.provider):
                return None
            found, targets[model] = target.provider, target
        return Forward(found, targets) if found is not None else None

    def target(self, provider: str, model: str) -> Target:
        """How a line for `model` answered by `provider` is billed."""
        try:
            attempts = self._providers().router.plan(model)
        except GatewayError:
            attempts = []
        for attempt in attempts:
            if attempt.route.target.provider == provider:
                return attempt.route.target
        return Target(provider, model)

    def client(self, provider: str) -> UpstreamBatches | None:
        """The provider's Batch API, always with its first key: the upstream batch and
        its files belong to the account that created them."""
        for adapter in self._providers().adapters:
            if adapter.name == provider and isinstance(adapter, OpenAICompatProvider):
                return adapter.batches()
        return None

    async def prepare(self, key_id: str, batch_id: str, file_id: str, endpoint: str) -> str | None:
        """The provider to forward a new batch to, or None (the gateway runs it; so it
        does a file it cannot read through, to report why). A key with a hard budget is
        refused here if the whole file, at its worst case, would overspend it."""
        if not self._enabled():
            return None
        demand: list[tuple[str, int, int]] = []
        try:
            lines = await self._blobs.lines(file_id)
        except FileNotFoundError:
            return None
        async with contextlib.aclosing(lines):
            async for raw in lines:
                if blank(raw):
                    continue
                try:
                    body = parse_line(raw, endpoint).body
                except LineError:
                    return None
                model = body.get("model")
                if not isinstance(model, str):
                    return None
                default = 0 if endpoint == "/v1/embeddings" else DEFAULT_OUTPUT_CAP
                output = (max_output(body) or default) * int(body.get("n") or 1)
                demand.append((model, prompt_bound(raw), output))
        models = {model for model, _, _ in demand}
        key = await self._keys.get(key_id)
        if key is None or not all(key.allows(model) for model in models):
            return None  # the gateway refuses the lines the key may not use, one by one
        forward = self.forward(models)
        if forward is None:
            return None
        if limited(key):
            await self._check_budget(key, batch_id, forward, demand)
        return forward.provider

    async def _check_budget(
        self, key: ApiKey, batch_id: str, forward: Forward, demand: list[tuple[str, int, int]]
    ) -> None:
        hard = key.monthly_budget_usd is not None and key.budget_mode == "hard"
        tokens, cost = 0, 0.0
        for model, prompt, output in demand:
            target = forward.targets[model]
            pricing = self.meter.resolve(target, model)
            if hard and not pricing.known:
                raise PermissionDenied(
                    f"No price is known for the model `{model}`, so a key with a hard "
                    "budget cannot use it in a batch.",
                    param="input_file_id",
                    code="model_not_priced",
                )
            discount = 1.0 - target.billing.batch_discount
            tokens += prompt + output
            cost += pricing.worst_case(prompt, output) * discount
        # Held and let go at once: the batch is billed when its results arrive.
        reservation = await self._budgets.reserve(key, tokens, cost)
        if reservation is not None:
            await self._budgets.settle(reservation, key, 0, 0.0, batch_id)

    async def charge(self, key_id: str, batch_id: str, records: list[UsageRecord]) -> None:
        """Count a forwarded batch's usage against its key's limits."""
        key = await self._keys.get(key_id)
        if key is None or not limited(key) or not records:
            return
        tokens = sum(record.tokens.total for record in records)
        cost = sum(record.cost_usd for record in records)
        try:
            reservation = await self._budgets.reserve(key, 0, 0.0)
        except GatewayError:
            # Already over: the usage rows are written, and the ledger is rebuilt from them.
            log.warning("batch %s: key %s is over its limits already", batch_id, key.id)
            return
        if reservation is not None:
            await self._budgets.settle(reservation, key, tokens, cost, batch_id)
