"""The API key record as the rest of the gateway sees it (never the secret itself)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

BudgetMode = Literal["hard", "soft"]


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    hint: str
    is_admin: bool
    created_at: datetime
    revoked_at: datetime | None = None
    owner: str | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    allowed_models: tuple[str, ...] | None = None  # exact names or wildcards; None = all
    monthly_token_quota: int | None = None
    monthly_budget_usd: float | None = None
    budget_mode: BudgetMode = "hard"
    alert_thresholds: tuple[float, ...] = (0.5, 0.8, 1.0)
    metadata: dict[str, Any] = field(default_factory=dict)
    rpm: int | None = None  # client rate limits: requests and tokens a minute, in flight
    tpm: int | None = None
    max_concurrent: int | None = None
    cache: bool | None = None  # the response cache for this key: on, off, or as configured

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def allows(self, model: str) -> bool:
        if self.allowed_models is None:
            return True
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.allowed_models)

    def public(self) -> dict[str, Any]:
        """The key as the admin API shows it."""
        return {
            "id": self.id,
            "object": "api_key",
            "name": self.name,
            "owner": self.owner,
            "key_hint": f"sk-savegate-…{self.hint}",
            "is_admin": self.is_admin,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "last_used_at": _iso(self.last_used_at),
            "allowed_models": list(self.allowed_models)
            if self.allowed_models is not None
            else None,
            "monthly_token_quota": self.monthly_token_quota,
            "monthly_budget_usd": self.monthly_budget_usd,
            "budget_mode": self.budget_mode,
            "alert_thresholds": list(self.alert_thresholds),
            "metadata": self.metadata,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "max_concurrent": self.max_concurrent,
            "cache": self.cache,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
