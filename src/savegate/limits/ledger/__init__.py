"""Monthly token quotas and USD budgets per key, enforced before the call.

Each request reserves its worst case (an upper bound of its prompt tokens plus its output
limit, priced) and settles its real cost afterwards, so concurrent requests can never spend
past a hard limit together, in one process or many:

    reservation = await ledger.reserve(key, tokens, cost)  # None for a key without limits
    ...  # run the request
    await ledger.settle(reservation, key, used_tokens, used_cost, request_id)

`MemoryLedger` keeps balances in the process (one process); `SharedLedger` keeps them in a
store every process shares: `RedisStore` (redis.py) or `DatabaseStore` (database.py).
"""

from savegate.limits.ledger.base import (
    Ledger,
    LedgerUnavailable,
    QuotaExceeded,
    Reservation,
    limited,
    month_start,
)
from savegate.limits.ledger.memory import MemoryLedger
from savegate.limits.ledger.shared import SharedLedger

__all__ = [
    "Ledger",
    "LedgerUnavailable",
    "MemoryLedger",
    "QuotaExceeded",
    "Reservation",
    "SharedLedger",
    "limited",
    "month_start",
]
