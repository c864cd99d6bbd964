"""What a request may spend, decided before any upstream call.

The key's model allow-list, its client rate limits (admitted by the shared token
estimate), and its budget and quota: each request reserves its worst case, priced at
the dearest deployment it may reach, so concurrent requests cannot overspend a hard
budget together. The ticket settles both with what was really used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from savegate.core.errors import GatewayError, PermissionDenied
from savegate.core.media import MediaUse
from savegate.core.request import ChatRequest
from savegate.core.tokens import estimate_tokens, prompt_bound
from savegate.limits.ledger import Ledger, Reservation, limited
from savegate.limits.rate import Permit, RateLimiter, RateLimits
from savegate.metering.meter import Meter, RequestMeter
from savegate.metering.prices import Pricing
from savegate.routing.router import Attempt

log = logging.getLogger(__name__)

DEFAULT_OUTPUT_CAP = 4096  # reserved when a limited key's request sets no output limit
_OUTPUT_FIELD = {"responses": "max_output_tokens"}  # else `max_tokens`


def check_model_access(request: ChatRequest) -> None:
    model = request.model
    if not request.context.key.allows(model):
        raise PermissionDenied(
            f"This API key is not allowed to use the model `{model}`.",
            param="model",
            code="model_not_allowed",
        )


def max_output(body: dict[str, Any]) -> int | None:
    value = (
        body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens")
    )
    return int(value) if value else None


class Ticket:
    """An admitted request: the request as it goes upstream (an output limit may have been
    added), and its holds on the key's rate limits and budget."""

    def __init__(
        self,
        request: ChatRequest,
        permit: Permit | None,
        reservation: Reservation | None,
        budgets: Ledger,
    ) -> None:
        self.request = request
        self._permit = permit
        self._reservation = reservation
        self._budgets = budgets
        self._settled = False

    @property
    def headers(self) -> dict[str, str]:
        """`x-ratelimit-*` for the key's client rate limits, as of admission."""
        return self._permit.headers() if self._permit is not None else {}

    def refused(self, error: GatewayError) -> GatewayError:
        """An error for this request's client, with the rate-limit headers it is owed."""
        error.headers = {**self.headers, **error.headers}
        return error

    async def settle(self, used: RequestMeter) -> None:
        """Replace the holds by what every attempt really used; once."""
        if self._settled:
            return
        self._settled = True
        key = self.request.context.key
        reserved = self._reservation
        if reserved is not None and (used.cost > reserved.cost or used.tokens > reserved.tokens):
            log.warning(
                "request %s used more than it reserved (key %s, model %s): %d tokens, $%.6f "
                "against %d tokens, $%.6f",
                self.request.context.request_id,
                key.id,
                self.request.model,
                used.tokens,
                used.cost,
                reserved.tokens,
                reserved.cost,
            )
        try:
            if reserved is not None:
                await self._budgets.settle(
                    reserved, key, used.tokens, used.cost, self.request.context.request_id
                )
        finally:
            if self._permit is not None:
                await self._permit.settle(used.tokens)


class Admission:
    def __init__(
        self,
        rate_limiter: RateLimiter,
        budgets: Ledger,
        meter: Meter,
        refused: Callable[[GatewayError], None] | None = None,
    ) -> None:
        """`refused` is told of each request a limit refuses (the metrics)."""
        self._rate_limiter = rate_limiter
        self._budgets = budgets
        self._meter = meter
        self._refused = refused

    async def admit(
        self,
        request: ChatRequest,
        plan: list[Attempt],
        endpoint: str,
        bound: MediaUse | None = None,
    ) -> Ticket:
        """Hold the request's share of its key's limits, or refuse it with 429. An image,
        audio or moderation call reserves the price of `bound`, the most it may use."""
        key = request.context.key
        permit = None
        if key.rpm is not None or key.tpm is not None or key.max_concurrent is not None:
            limits = RateLimits(key.rpm, key.tpm, key.max_concurrent)
            try:
                permit = await self._rate_limiter.acquire(
                    key.id, limits, estimate_tokens(request.raw)
                )
            except GatewayError as exc:
                self._refuse(exc)
                raise
        try:
            if bound is None:
                request, reservation = await self._reserve(request, plan, endpoint)
            else:
                reservation = await self._reserve_units(request, plan, bound)
        except BaseException as exc:
            if isinstance(exc, GatewayError):
                self._refuse(exc)
            if permit is not None:
                await permit.settle(0)
            raise
        return Ticket(request, permit, reservation, self._budgets)

    async def admit_hit(self, request: ChatRequest) -> dict[str, str]:
        """A request answered from the response cache counts against its key's rpm only:
        it uses no upstream tokens, costs nothing and is over at once. Its headers."""
        key = request.context.key
        if key.rpm is None:
            return {}
        permit = await self._rate_limiter.acquire(key.id, RateLimits(key.rpm, None, None), 0)
        await permit.settle(0)
        return permit.headers()

    def _refuse(self, error: GatewayError) -> None:
        if self._refused is not None:
            self._refused(error)

    async def _reserve(
        self, request: ChatRequest, plan: list[Attempt], endpoint: str
    ) -> tuple[ChatRequest, Reservation | None]:
        key = request.context.key
        if not limited(key):
            return request, None
        prompt = prompt_bound(request.raw)
        output = max_output(request.body)
        if output is None and endpoint != "embeddings":
            output = DEFAULT_OUTPUT_CAP
            request = request.with_field(_OUTPUT_FIELD.get(endpoint, "max_tokens"), output)
        output = (output or 0) * int(request.body.get("n") or 1)
        cost = max((self._price(request, a).worst_case(prompt, output) for a in plan), default=0.0)
        reservation = await self._budgets.reserve(key, prompt + output, cost)
        return request, reservation

    async def _reserve_units(
        self, request: ChatRequest, plan: list[Attempt], bound: MediaUse
    ) -> Reservation | None:
        key = request.context.key
        if not limited(key):
            return None
        cost = max((self._price(request, a).media_worst_case(bound) for a in plan), default=0.0)
        return await self._budgets.reserve(key, bound.tokens.total, cost)

    def _price(self, request: ChatRequest, attempt: Attempt) -> Pricing:
        """The attempt's prices: by the upstream's model name, else by the public name (an
        Azure deployment name has no list price, the model it serves has). A key with a
        hard budget is never served at an unknown price."""
        target = attempt.route.target
        pricing = self._meter.resolve(target, request.model)
        key = request.context.key
        if not pricing.known and key.monthly_budget_usd is not None and key.budget_mode == "hard":
            raise PermissionDenied(
                f"No price is known for the model `{request.model}` (upstream "
                f"`{target.model}`), so a key with a hard budget cannot use it. An operator "
                "can set its price under `prices:` in the config.",
                param="model",
                code="model_not_priced",
            )
        return pricing
