"""Configuration: a YAML file validated at start, plus command-line overrides.

Everything is optional: with no file the gateway serves the embedded model from a
SQLite store in `.savegate/`.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from savegate.config_problems import environment_problems, validation_problems, where
from savegate.core.cpus import usable_cpus
from savegate.core.prices import ModelPrice
from savegate.httpclient.proxy import Proxy, environment_secrets, parse_proxy, proxy_for

DEFAULT_CONFIG_FILE = "savegate.yaml"
# Set, these override the file's store URLs, so that their passwords need not be in it.
ENV_OVERRIDES = {"SAVEGATE_DATABASE_URL": "database_url", "SAVEGATE_REDIS_URL": "redis_url"}
# Extra upstream headers whose values are credentials, kept as secret as the keys.
_CREDENTIAL_HEADER = re.compile(r"auth|key|token|secret", re.IGNORECASE)


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid; `problems` says where
    (`providers.openai.models[2]: …`)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        super().__init__("\n  ".join([message, *self.problems]))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _yaml_off(value: object) -> object:
    return "off" if value is False else value  # YAML reads a bare `off` as false


PromptCache = Annotated[Literal["off", "auto"], BeforeValidator(_yaml_off)]


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
    # `/v1/batches`: run by the gateway, or forwarded to the upstream's own Batch API
    # (OpenAI's, for its discount); only for `openai` providers.
    batch: Literal["gateway", "native"] = "gateway"
    api_key_env: list[str] = Field(default_factory=list)
    models: list[ModelRoute]
    headers: dict[str, str] = Field(default_factory=dict)
    discount: float = Field(default=0.0, ge=0.0, le=1.0)  # off list price, for "paid" cost
    batch_discount: float = Field(default=0.0, ge=0.0, le=1.0)  # off the paid cost of batch lines
    prices: dict[str, ModelPrice] = Field(default_factory=dict)  # explicit paid prices
    timeout_seconds: float = 600.0
    connect_timeout_seconds: float = 10.0
    max_connections: int = 1000
    # A forward proxy URL, or `none` to go direct; unset: HTTPS_PROXY / HTTP_PROXY / NO_PROXY.
    proxy: str | None = None
    ca_bundle: str | None = None  # PEM file of the authorities trusted for upstream TLS

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        if value is not None and value != "none":
            parse_proxy(value)
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _readable_bundle(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"no such CA bundle file: {value}")
        return value

    # `auto`: prompt-caching breakpoints on long system prompts and tool lists (Anthropic).
    prompt_cache: PromptCache = "off"

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
        if self.batch == "native" and self.type != "openai":
            raise ValueError("batch: native needs a provider of type openai")
        return self

    @model_validator(mode="after")
    def _prompt_cache_needs_anthropic(self) -> ProviderConfig:
        if self.prompt_cache == "auto" and self.type != "anthropic":
            raise ValueError("prompt_cache: auto needs a provider of type anthropic")
        return self

    def api_keys(self) -> list[str]:
        """Upstream keys read from the environment; a missing variable is an error."""
        missing = [name for name in self.api_key_env if not os.environ.get(name)]
        if missing:
            raise ConfigError(f"environment variable(s) not set: {', '.join(missing)}")
        return [os.environ[name] for name in self.api_key_env]

    def proxy_server(self) -> Proxy | None:
        """The forward proxy to the upstream, if any (the environment's unless `proxy`
        says); a malformed HTTPS_PROXY or HTTP_PROXY is an error."""
        try:
            return proxy_for(self.base_url, self.proxy)
        except ValueError as exc:
            raise ConfigError(f"the proxy for {self.base_url}: {exc}") from exc

    def secrets(self) -> list[str]:
        """What must never leave the process: the keys and credential header values
        (both `Bearer x` and `x`)."""
        found = self.api_keys()
        for name, value in self.headers.items():
            if _CREDENTIAL_HEADER.search(name):
                found += [value, value.partition(" ")[2]]
        if self.proxy is not None and self.proxy != "none":
            found += parse_proxy(self.proxy).secrets()
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
    max_audio_body_bytes: int = 64 * 1024 * 1024  # transcription and translation uploads
    max_image_body_bytes: int = 64 * 1024 * 1024  # image edit and variation uploads
    shutdown_grace_seconds: float = 30.0  # in-flight requests and streams may finish
    workers: Annotated[int, Field(ge=1)] | Literal["auto"] = 1  # processes sharing the port

    @property
    def processes(self) -> int:
        """How many gateway processes serve: `workers`, or for `auto` one per CPU this
        process may use (its affinity, within a container's CPU limit)."""
        return usable_cpus() if self.workers == "auto" else self.workers

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"  # json: one object per line
    # Requests one worker serves at once; past it, new ones get 503 at once (None: no cap).
    max_inflight: int | None = Field(default=None, ge=1)


StrategyName = Literal["weighted", "least_inflight", "lowest_latency", "cheapest"]


class DeploymentConfig(_Strict):
    """One way to serve a model group: a provider (all its keys), the upstream's name."""

    provider: str
    model: str | None = None
    weight: float = Field(default=1.0, gt=0)


class ModelGroupConfig(_Strict):
    deployments: list[DeploymentConfig] = Field(min_length=1)
    strategy: StrategyName | None = None
    fallbacks: list[str] = Field(default_factory=list)
    prompt_cache: PromptCache | None = None  # for its Anthropic deployments; else the provider's


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


class FilesConfig(_Strict):
    """Uploaded files (`/v1/files`): their bytes on disk, their metadata in the database."""

    directory: str | None = None  # shared by replicas; default: `<data_dir>/files`
    max_bytes: int = Field(default=512 * 1024 * 1024, ge=1)


class BatchesConfig(_Strict):
    """The Batch API's lines run in the background, below live traffic."""

    concurrency: int = Field(default=4, ge=1)  # lines in flight per process
    yield_above_inflight: int = Field(default=32, ge=0)  # live requests that pause batches
    lease_seconds: float = Field(default=30.0, gt=0)  # a dead runner's batch is taken over
    # A batch made here starts at once; this is for those made elsewhere or left by a
    # dead process (whose lease runs longer anyway).
    poll_seconds: float = Field(default=5.0, gt=0)
    window_seconds: float = Field(default=86400.0, gt=0)  # what `24h` means


class ResponsesConfig(_Strict):
    """Responses API answers stored for `previous_response_id` and `GET /v1/responses/{id}`."""

    retention_days: float = Field(default=30.0, gt=0)  # as long as OpenAI keeps them


class SemanticCacheConfig(_Strict):
    """The semantic cache: off unless `groups` names some model groups."""

    groups: list[str] = Field(default_factory=list)  # public names after aliases; `*` = all
    threshold: float = Field(default=0.95, gt=0, le=1)  # cosine similarity of a hit, at least
    # A public model name the gateway routes (an embeddings model); None: the embedded model.
    embedding_model: str | None = None
    max_entries: int = Field(default=10_000, ge=1)  # rows kept, the oldest deleted
    ttl_seconds: float = Field(default=3600.0, gt=0)
    max_chars: int = Field(default=6000, ge=1)  # longer conversation text is not compared
    refresh_seconds: float = Field(default=1.0, gt=0)  # how often entries of others are read
    max_inflight: int = Field(default=8, ge=1)  # embedding calls at once; past it, bypassed


class CacheConfig(_Strict):
    """The exact response cache: off unless `models` names some (or a key asks for it)."""

    models: list[str] = Field(default_factory=list)  # public names after aliases; `*` = all
    ttl_seconds: float = Field(default=3600.0, gt=0)
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=0)  # the in-memory LRU's bound
    max_entry_bytes: int = Field(default=1024 * 1024, ge=0)  # one answer, either backend
    backend: Literal["memory", "redis"] = "memory"
    cache_all: bool = False  # else only repeatable requests: `temperature: 0` or a `seed`
    per_key: bool = False  # each key its own cache, rather than one shared by all keys
    semantic: SemanticCacheConfig = SemanticCacheConfig()


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

    @model_validator(mode="after")
    def _sdk_installed(self) -> TracingConfig:
        # Checked here: the sidecar that imports it would only fail again and again.
        if self.enabled and importlib.util.find_spec("opentelemetry.sdk") is None:
            raise ValueError("tracing needs the OpenTelemetry SDK: pip install 'savegate[otel]'")
        return self


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
    files: FilesConfig = FilesConfig()
    batches: BatchesConfig = BatchesConfig()
    cache: CacheConfig = CacheConfig()
    responses: ResponsesConfig = ResponsesConfig()

    @model_validator(mode="after")
    def _metrics_port_of_its_own(self) -> Config:
        if self.metrics.port is not None and self.metrics.port == self.server.port:
            raise ValueError("metrics.port must differ from server.port")
        return self

    @model_validator(mode="after")
    def _redis_cache_needs_redis(self) -> Config:
        if self.cache.backend == "redis" and not self.redis_url:
            raise ValueError("cache.backend: redis needs redis_url")
        return self

    @model_validator(mode="after")
    def _semantic_cache_needs_embeddings(self) -> Config:
        semantic = self.cache.semantic
        if semantic.groups and semantic.embedding_model is None and not self.local.enabled:
            raise ValueError("cache.semantic needs embedding_model when local is disabled")
        return self

    @model_validator(mode="after")
    def _deployments_name_providers(self) -> Config:
        unknown = [
            f"{where(('models', name, 'deployments', index, 'provider'))}: unknown provider "
            f"'{deployment.provider}'"
            for name, group in self.models.items()
            for index, deployment in enumerate(group.deployments)
            if deployment.provider not in self.providers
        ]
        if unknown:
            raise ValueError("\n".join(unknown))  # each with its own path
        return self

    def upstream_secrets(self) -> list[str]:
        """Everything no log line or relayed body may show: upstream keys, proxy
        credentials, and the passwords in the store URLs."""
        found = [secret for provider in self.providers.values() for secret in provider.secrets()]
        urls = (self.database_url, self.redis_url)
        stores = [unquote(password) for url in urls if url and (password := urlsplit(url).password)]
        return found + environment_secrets() + stores

    def files_directory(self) -> Path:
        return Path(self.files.directory or Path(self.data_dir) / "files").resolve()

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{Path(self.data_dir).resolve() / 'savegate.db'}"


def load_config(path: str | None, environ: Mapping[str, str] = os.environ) -> Config:
    """Load `path`, or `./savegate.yaml` when it exists, or the defaults; then the
    ENV_OVERRIDES variables that `environ` sets."""
    if path is None and Path(DEFAULT_CONFIG_FILE).exists():
        path = DEFAULT_CONFIG_FILE
    raw = _read(path) if path is not None else {}
    raw.update({field: environ[name] for name, field in ENV_OVERRIDES.items() if environ.get(name)})
    config = validate_config(raw, f"config file {path}" if path else "the config")
    for provider in config.providers.values():
        provider.proxy_server()
    return config


def _read(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
        raw = yaml.safe_load(text) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return raw


def validate_config(raw: dict[str, Any], what: str = "the config") -> Config:
    """`raw` as a Config, or a ConfigError naming every problem by its path."""
    problems = environment_problems(raw)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        problems = validation_problems(exc) + problems
    if problems:
        raise ConfigError(f"{what} is invalid:", problems)
    return config
