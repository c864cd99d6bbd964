"""Database tables (SQLAlchemy Core). SQLite by default, PostgreSQL by URL.

The schema itself is created and changed only by the Alembic migrations in
`migrations/`, which run at start; these definitions must match them.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("hint", String(8), nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("owner", String(200), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Column("allowed_models", JSON, nullable=True),
    Column("monthly_token_quota", BigInteger, nullable=True),
    Column("monthly_budget_usd", Float, nullable=True),
    Column("budget_mode", String(8), nullable=False, default="hard"),
    Column("alert_thresholds", JSON, nullable=True),
    Column("metadata", JSON, nullable=True),
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("max_concurrent", Integer, nullable=True),
    Column("cache", Boolean, nullable=True),  # the response cache: null = as configured
)

# Counters other processes bump so that running gateways notice a change cheaply
# (for instance `keys_revision` after `savegate keys revoke`).
counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Integer, nullable=False),
)

# Responses API conversations kept for `previous_response_id` and `GET /v1/responses/{id}`.
responses = Table(
    "responses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key_id", String(32), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),  # for purges
    Column("response", JSON, nullable=False),
    Column("input_items", JSON, nullable=False),
)

# Responses a native upstream (`responses: native`) made and keeps: the provider and the
# upstream key (a digest of it, `account`) whose account holds each, and the keys that may
# read it back and continue from it through the gateway: the one that made it, and those a
# cache hit replayed it to (`replayed`).
native_responses = Table(
    "native_responses",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("key_id", String(32), primary_key=True),
    Column("provider", String(100), nullable=False),
    Column("account", String(16), nullable=True),
    Column("replayed", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# One row per upstream call (or per refused request), written in batches off the hot path.
usage = Table(
    "usage",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("request_id", String(64), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("endpoint", String(32), nullable=False),
    Column("requested_model", String(200), nullable=False),
    Column("model", String(200), nullable=True),
    Column("provider", String(100), nullable=True),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("cached_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("reasoning_tokens", Integer, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("list_cost_usd", Float, nullable=False, default=0.0),
    Column("latency_ms", Float, nullable=True),
    Column("ttft_ms", Float, nullable=True),
    Column("stream", Boolean, nullable=False, default=False),
    Column("status", Integer, nullable=False),
    Column("error_type", String(64), nullable=True),
    Column("cache_hit", Boolean, nullable=False, default=False),
    Column("client_disconnected", Boolean, nullable=False, default=False),
    Column("estimated", Boolean, nullable=False, default=False),
    # Cache writes (part of prompt_tokens), and what the request saved by source:
    # cost_usd + the savings = list_cost_usd.
    Column("cache_write_tokens", Integer, nullable=False, default=0),
    Column("saving_discount_usd", Float, nullable=False, default=0.0),
    Column("saving_cache_usd", Float, nullable=False, default=0.0),  # response cache hits
    Column("saving_semantic_usd", Float, nullable=False, default=0.0),
    Column("saving_prompt_cache_usd", Float, nullable=False, default=0.0),
    Column("saving_route_usd", Float, nullable=False, default=0.0),
    Column("batch_id", String(64), nullable=True),  # the batch a line's call was made for
    # Images, audio and speech: the unit they are billed by (image, second, character).
    Column("unit", String(16), nullable=True),
    Column("units", Float, nullable=True),
    Column("semantic_cache_hit", Boolean, nullable=False, default=False),  # also a cache_hit
    Index("ix_usage_key_created", "key_id", "created_at"),
    Index("ix_usage_created", "created_at"),
)

# Usage rows the database refused (a value it would not take): set aside, with its
# reason, so that they never hold up the rows behind them.
usage_rejected = Table(
    "usage_rejected",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("rejected_at", DateTime(timezone=True), nullable=False),
    Column("record", Text, nullable=False),  # the usage row as JSON, ASCII-escaped
    Column("reason", Text, nullable=False),
)

# The budget ledger when the database holds it (several processes without Redis): each
# key's month, the holds of requests running, and while a month is being reloaded from
# `usage`, the requests settled meanwhile (left out of the reload).
budget_months = Table(
    "budget_months",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("period", String(7), primary_key=True),  # YYYY-MM, UTC
    Column("gen", String(16), nullable=False),
    Column("tokens", BigInteger, nullable=False),
    Column("spend", Float, nullable=False),
    Column("loading_until", Float, nullable=True),  # epoch seconds
    Column("loader", String(16), nullable=True),
)

budget_holds = Table(
    "budget_holds",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("key_id", String(32), nullable=False),
    Column("period", String(7), nullable=False),
    Column("tokens", BigInteger, nullable=False),
    Column("cost", Float, nullable=False),
    Column("expires_at", Float, nullable=False),  # epoch seconds: the hold's lease
    Index("ix_budget_holds_month", "key_id", "period"),
)

budget_settled = Table(
    "budget_settled",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("request_id", String(64), primary_key=True),
)

# Client rate limits when the database holds them (several workers without Redis): one row
# per admitted request, for as long as it counts against its key's rpm or tpm (its last
# window) or holds a concurrency slot (until settled, or its lease ends).
rate_permits = Table(
    "rate_permits",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("key_id", String(32), nullable=False),
    Column("admitted_at", Float, nullable=False),  # epoch seconds
    Column("request", Boolean, nullable=False),  # counted against rpm
    Column("tokens", BigInteger, nullable=True),  # counted against tpm: reserved, then used
    Column("lease_until", Float, nullable=True),  # epoch seconds, while it holds a slot
    Index("ix_rate_permits_key", "key_id", "admitted_at"),
    Index("ix_rate_permits_admitted", "admitted_at"),
)

# Uploaded files (`/v1/files`) and the files batches write: the bytes are on disk
# (`store/blobs.py`), named by id; a row here makes a file visible, to its key only.
files = Table(
    "files",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key_id", String(32), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("filename", String(255), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),  # epoch seconds
    Column("expires_at", Float, nullable=True),
    Index("ix_files_key_created", "key_id", "created_at"),
)

# Batches (`/v1/batches`): their state, counts and token totals; `runner` and
# `lease_until` name the one process running a batch, for as long as it renews its lease.
BATCH_TIMES = (
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)
BATCH_TOKENS = ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")
batches = Table(
    "batches",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key_id", String(32), nullable=False),
    Column("endpoint", String(32), nullable=False),
    Column("input_file_id", String(64), nullable=False),
    Column("completion_window", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("metadata", JSON, nullable=True),
    Column("errors", JSON, nullable=True),
    Column("output_file_id", String(64), nullable=True),
    Column("error_file_id", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
    *(Column(name, Float, nullable=True) for name in BATCH_TIMES),
    Column("total", Integer, nullable=False),
    Column("completed", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    *(Column(name, BigInteger, nullable=False) for name in BATCH_TOKENS),
    Column("stop_code", String(64), nullable=True),  # why the lines not run failed
    Column("stop_message", Text, nullable=True),
    Column("runner", String(32), nullable=True),
    Column("lease_until", Float, nullable=True),  # epoch seconds
    # A batch forwarded to its provider's own Batch API (`batch: native`): the provider,
    # the upstream batch, and whether its results are in (files and usage rows written).
    Column("upstream", String(64), nullable=True),
    Column("upstream_batch_id", String(128), nullable=True),
    Column("upstream_ingested", Boolean, nullable=False, server_default=false()),
    Index("ix_batches_key_created", "key_id", "created_at"),
    Index("ix_batches_status", "status"),
)

# The lines of a batch that are done, each with its output line: the primary key makes
# a line done (and its usage rows written, in the same transaction) at most once.
batch_lines = Table(
    "batch_lines",
    metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("line", Integer, primary_key=True),
    Column("ok", Boolean, nullable=False),  # to the output file, else the error file
    Column("result", Text, nullable=False),  # the JSONL line
)

# The semantic cache, shared by every process: a prompt's vector (float32 bytes, unit
# length), its normalised text, and the answer in the exact cache's stored form. Each
# process keeps them in memory and reads the rows it has not seen (`id` above the last).
semantic_cache = Table(
    "semantic_cache",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("scope", String(40), nullable=False),  # hash of the model and the other fields
    Column("vector", LargeBinary, nullable=False),
    Column("text", Text, nullable=False),
    Column("answer", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", Float, nullable=False),  # epoch seconds
    Column("size", Integer, nullable=False),  # bytes of the answer
    Index("ix_semantic_cache_expires", "expires_at"),
)
