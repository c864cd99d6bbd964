"""Configuration: a YAML file validated at start, plus command-line overrides.

Everything is optional: with no file the gateway serves the embedded model from a
SQLite store in `.savegate/`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from savegate.core.prices import ModelPrice

DEFAULT_CONFIG_FILE = "savegate.yaml"
# Extra upstream headers whose values are credentials, kept as secret as the keys.
_CREDENTIAL_HEADER = re.compile(r"auth|key|token|secret", re.IGNORECASE)


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRoute(_Strict):
    """A public model name (exact or `*` wildcard) and the upstream's name for it."""

    name: str
    upstream: str | None = None


class ProviderConfig(_Strict):
    """An upstream: `openai` for any OpenAI-compatible server (OpenAI, vLLM, Ollama,
    llama.cpp server, …), `anthropic` for Anthropic's Messages API, `gemini` for Google's
    Gemini API (`generateContent`)."""

    type: Literal["openai", "anthropic", "gemini"] = "openai"
    base_url: str
    # `/v1/responses`: translated through chat, or passed through to an upstream that
    # serves it (OpenAI); only for `openai` providers.
    responses: Literal["chat", "native"] = "chat"
    api_key_env: list[str] = Field(default_factory=list)
    models: list[ModelRoute]
    headers: dict[str, str] = Field(default_factory=dict)
    discount: float = Field(default=0.0, ge=0.0, le=1.0)  # off list price, for "paid" cost
    prices: dict[str, ModelPrice] = Field(default_factory=dict)  # explicit paid prices
    timeout_seconds: float = 600.0
    connect_timeout_seconds: float = 10.0
    max_connections: int = 1000

    @field_validator("api_key_env", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("models", mode="before")
    @classmethod
    def _names_or_routes(cls, value: object) -> object:
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _native_responses_need_openai(self) -> ProviderConfig:
        if self.responses == "native" and self.type != "openai":
            raise ValueError("responses: native needs a provider of type openai")
        return self

    def api_keys(self) -> list[str]:
        """Upstream keys read from the environment; a missing variable is an error."""
        missing = [name for name in self.api_key_env if not os.environ.get(name)]
        if missing:
            raise ConfigError(f"environment variable(s) not set: {', '.join(missing)}")
        return [os.environ[name] for name in self.api_key_env]

    def secrets(self) -> list[str]:
        """What must never leave the process: the keys and credential header values
        (both `Bearer x` and `x`)."""
        found = self.api_keys()
        for name, value in self.headers.items():
            if _CREDENTIAL_HEADER.search(name):
                found += [value, value.partition(" ")[2]]
        return found


class LocalModelConfig(_Strict):
    enabled: bool = True
    name: str = "SmolLM2-135M-Instruct"
    model_path: str | None = None
    context_tokens: int = 8192
    default_max_tokens: int = Field(default=512, ge=1)  # when a request sets no limit
    threads: int | None = None


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 32 * 1024 * 1024
    shutdown_grace_seconds: float = 30.0  # in-flight requests and streams may finish
    workers: Annotated[int, Field(ge=1)] | Literal["auto"] = 1  # processes sharing the port

    @property
    def processes(self) -> int:
        """How many gateway processes serve: `workers`, or one per core for `auto`."""
        return (os.cpu_count() or 1) if self.workers == "auto" else self.workers

    log_level: Literal["debug", "info", "warning", "error"] = "info"


StrategyName = Literal["weighted", "least_inflight", "lowest_latency"]


class DeploymentConfig(_Strict):
    """One way to serve a model group: a provider (all its keys), the upstream's name."""

    provider: str
    model: str | None = None
    weight: float = Field(default=1.0, gt=0)


class ModelGroupConfig(_Strict):
    deployments: list[DeploymentConfig] = Field(min_length=1)
    strategy: StrategyName | None = None
    fallbacks: list[str] = Field(default_factory=list)


class RoutingConfig(_Strict):
    strategy: StrategyName = "weighted"
    max_attempts: int = Field(default=3, ge=1)
    attempt_timeout_seconds: float = Field(default=600.0, gt=0)
    total_timeout_seconds: float = Field(default=900.0, gt=0)
    backoff_seconds: float = Field(default=0.2, ge=0)
    max_retry_after_seconds: float = Field(default=10.0, ge=0)
    failure_threshold: int = Field(default=3, ge=1)
    cooldown_seconds: float = Field(default=30.0, ge=0)
    continue_streams: bool = False  # finish a broken stream on a fallback deployment


class AlertsConfig(_Strict):
    webhook_url: str | None = None


class UsageConfig(_Strict):
    flush_seconds: float = 0.5
    buffer_rows: int = 1_000_000


class MetricsConfig(_Strict):
    enabled: bool = True
    # A port of its own for /metrics, without a key; else /metrics on the main port needs
    # the admin key.
    port: int | None = Field(default=None, ge=1, le=65535)


class TracingConfig(_Strict):
    """OpenTelemetry traces, sent over OTLP/HTTP (protobuf); needs the `otel` extra."""

    enabled: bool = False
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    headers: dict[str, str] = Field(default_factory=dict)  # sent with every export
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)  # of traces begun here
    record_content: bool = False  # prompts and answers in the spans
    service_name: str = "savegate"


class Config(_Strict):
    server: ServerConfig = ServerConfig()
    data_dir: str = ".savegate"
    database_url: str | None = None
    keys_refresh_seconds: float = 0.25
    redis_url: str | None = None  # shared client rate limits across replicas
    redis_prefix: str = "savegate:rl:"
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, ModelGroupConfig] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(default_factory=dict)
    routing: RoutingConfig = RoutingConfig()
    local: LocalModelConfig = LocalModelConfig()
    prices: dict[str, ModelPrice] = Field(default_factory=dict)  # list prices, USD per 1M
    alerts: AlertsConfig = AlertsConfig()
    usage: UsageConfig = UsageConfig()
    metrics: MetricsConfig = MetricsConfig()
    tracing: TracingConfig = TracingConfig()

    @model_validator(mode="after")
    def _deployments_name_providers(self) -> Config:
        for name, group in self.models.items():
            for deployment in group.deployments:
                if deployment.provider not in self.providers:
                    raise ValueError(
                        f"model group '{name}' uses unknown provider '{deployment.provider}'"
                    )
        return self

    def upstream_secrets(self) -> list[str]:
        return [secret for provider in self.providers.values() for secret in provider.secrets()]

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{Path(self.data_dir).resolve() / 'savegate.db'}"


def load_config(path: str | None) -> Config:
    """Load `path`, or `./savegate.yaml` when it exists, or the defaults."""
    if path is None:
        if not Path(DEFAULT_CONFIG_FILE).exists():
            return Config()
        path = DEFAULT_CONFIG_FILE
    try:
        text = Path(path).read_text(encoding="utf-8")
        raw = yaml.safe_load(text) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"config file {path} is invalid:\n{exc}") from exc
    for provider in config.providers.values():
        provider.api_keys()
    return config
