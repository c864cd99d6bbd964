"""What an operator may set on a key, validated (admin API, CLI)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class KeySettings(BaseModel):
    """Everything about a key but its identity; every field optional on update."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    owner: str | None = Field(default=None, max_length=200)
    expires_at: datetime | None = None
    allowed_models: list[str] | None = None
    monthly_token_quota: int | None = Field(default=None, ge=0)
    monthly_budget_usd: float | None = Field(default=None, ge=0)
    budget_mode: Literal["hard", "soft"] | None = None
    alert_thresholds: list[float] | None = None
    metadata: dict[str, Any] | None = None
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    max_concurrent: int | None = Field(default=None, ge=1)
    cache: bool | None = None  # the response cache: on, off, or (null) as the config says

    @field_validator("name", "budget_mode", mode="before")
    @classmethod
    def _given(cls, value: Any) -> Any:
        # Stored NOT NULL: a key always has a name and a budget mode, so null is no change
        # a client can ask for (leaving the field out keeps it as it is).
        if value is None:
            raise ValueError("may be left out but not set to null")
        return value

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_validator("alert_thresholds")
    @classmethod
    def _fractions(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(not 0 < v <= 10 for v in value):
            raise ValueError("thresholds are fractions of the budget, such as 0.5 or 1.0")
        return sorted(value) if value is not None else None

    def columns(self) -> dict[str, Any]:
        """The fields that were given, as table columns."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class NewKey(KeySettings):
    name: str = Field(min_length=1, max_length=200)
    is_admin: bool = False
