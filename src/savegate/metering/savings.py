"""What a request saved, by source, and the prices that say so.

Every usage row is priced against one baseline: the request at list price, on the
deployment it would have gone to without a cheaper route (the dearest of its group, for
`strategy: cheapest`; else the one that served it), with its cache reads as plain input.
Each lever then takes its share off that baseline, in turn, so the shares add up to
exactly `list cost - paid cost`:

- prompt caching: the cache reads' discount, at the baseline deployment's list price;
- provider discount: that deployment's list price against what the operator pays for it;
- cheaper route: what the baseline deployment is paid against the one that served.

A response-cache or semantic-cache hit costs nothing: its whole list-price cost is the
saving of that cache.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from savegate.core.usage import TokenCounts
from savegate.metering.prices import Pricing


@dataclass(frozen=True, slots=True)
class Savings:
    """USD saved by one request, by source (the `saving_*_usd` columns of `usage`)."""

    discount: float = 0.0
    response_cache: float = 0.0
    semantic_cache: float = 0.0
    prompt_cache: float = 0.0
    route: float = 0.0

    @property
    def total(self) -> float:
        return (
            self.discount
            + self.response_cache
            + self.semantic_cache
            + self.prompt_cache
            + self.route
        )


@dataclass(frozen=True, slots=True)
class Priced:
    paid: float
    listed: float  # the baseline: paid + every saving
    savings: Savings

    def batched(self, discount: float) -> Priced:
        """A batch line's price: the provider's batch discount is a discount too."""
        cut = self.paid * discount
        return Priced(
            self.paid - cut,
            self.listed,
            replace(self.savings, discount=self.savings.discount + cut),
        )


def price_call(served: Pricing, baseline: Pricing, tokens: TokenCounts) -> Priced:
    """`tokens` served by `served`, against the `baseline` deployment's prices (the
    same pricing when no cheaper route was taken)."""
    paid = served.paid_cost(tokens)
    baseline_paid = paid if baseline is served else baseline.paid_cost(tokens)
    at_list = baseline.list_cost(tokens)
    listed = baseline.list_cost(tokens.uncached()) if tokens.cached else at_list
    savings = Savings(
        discount=at_list - baseline_paid,
        prompt_cache=listed - at_list,
        route=baseline_paid - paid,
    )
    return Priced(paid, listed, savings)
