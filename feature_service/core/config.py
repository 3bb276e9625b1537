"""Settings: one pydantic-settings class, read from `FS_*` environment variables.

When `FS_BROKER_URL`, `FS_REDIS_URL`, `FS_API_URL`, `FS_DEFINITIONS` or `FS_OFFLINE_URI`
are not set, `load_settings()` fills them from the file a running `feature-service up`
writes under the stores folder (`stores/stack.json`), so commands started beside the
embedded stack find it, its definitions and its offline store on their own.

>>> Settings(broker_url="127.0.0.1:9092").broker_url
'127.0.0.1:9092'
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

STACK_FILE_NAME = "stack.json"


class Settings(BaseSettings):
    """Every setting of the services, CLI and SDK (environment prefix `FS_`)."""

    model_config = SettingsConfigDict(env_prefix="FS_", extra="ignore")

    broker_url: str | None = Field(
        default=None, description="Kafka bootstrap servers, e.g. `127.0.0.1:9092`."
    )
    redis_url: str | None = Field(default=None, description="e.g. `redis://127.0.0.1:6379/0`.")
    api_url: str | None = Field(default=None, description="Base URL of the lookup API.")
    offline_uri: str = Field(
        default="stores/offline", description="fsspec URI of the offline Parquet store."
    )
    definitions: Path = Field(
        default=Path("definitions"), description="A YAML file or a folder of them."
    )
    stores_dir: Path = Field(
        default=Path("stores"), description="Where the embedded stack keeps data and logs."
    )
    api_host: str = Field(default="127.0.0.1", description="Address `serve` binds to.")
    api_port: int = Field(default=8000, ge=0, le=65535, description="Port `serve` binds to.")
    api_keys: list[str] = Field(
        default_factory=list, description="If set, requests need one (`x-api-key` header)."
    )
    max_entities_per_request: int = Field(default=1000, ge=1)
    log_level: str = Field(default="warning")
    rebalance_timeout_s: int = Field(
        default=60, ge=2, description="Consumer group rebalance/session timeout of the worker."
    )
    max_poll_records: int = Field(
        default=20_000, ge=1, description="Most records the worker fetches per poll."
    )
    flush_events: int = Field(
        default=50_000, ge=1, description="Pending events that make the worker commit."
    )
    state_cache_entities: int = Field(
        default=20_000,
        ge=0,
        description="Entity states per view the worker keeps in memory (others re-read).",
    )
    worker_metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="If set, the worker serves Prometheus metrics on this port.",
    )
    worker_metrics_host: str = Field(
        default="127.0.0.1", description="Address of the worker's metrics port (0.0.0.0 in k8s)."
    )
    flush_interval_s: float = Field(
        default=0.5, gt=0, description="Longest time an event waits before it is committed."
    )
    definitions_poll_s: float = Field(
        default=3.0,
        ge=0,
        description="How often the worker and API look for changed definitions (0: never).",
    )
    consumer_group: str = Field(
        default="feature-service",
        min_length=1,
        description="Kafka consumer group (and Faust app id) the workers share.",
    )
    redis_cluster: bool = Field(
        default=False, description="`FS_REDIS_URL` names a node of a Redis Cluster."
    )
    redis_max_connections: int = Field(
        default=100,
        ge=1,
        description="Redis connections per process (per node for a cluster); more "
        "concurrent requests wait for one.",
    )
    redis_pool_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="Longest wait for a free Redis connection before a 503.",
    )
    health_host: str = Field(
        default="127.0.0.1", description="Address the worker's /health and /metrics bind to."
    )
    health_port: int | None = Field(
        default=None, ge=0, le=65535, description="Port of the worker's /health and /metrics."
    )

    @property
    def stack_file(self) -> Path:
        """The file a running `feature-service up` describes itself in."""
        return self.stores_dir / STACK_FILE_NAME


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, completed from a running embedded stack if any.

    Explicit settings always win over what the stack file says.
    """
    settings = Settings(**overrides)  # type: ignore[arg-type]
    try:
        stack = json.loads(settings.stack_file.read_text())
    except (OSError, ValueError):
        return settings
    if not _process_alive(stack.get("pid")):
        return settings  # a stale file left by a stack that was killed
    # What the stack runs with (its definitions and offline store too, so that commands
    # beside `up --definitions DIR` read its registry, not the folder they were started
    # in); a setting given in the environment or as an override is kept.
    found: dict[str, object] = {
        name: stack[name]
        for name in ("broker_url", "redis_url", "api_url", "offline_uri", "definitions")
        if name not in settings.model_fields_set and isinstance(stack.get(name), str)
    }
    if "definitions" in found:
        found["definitions"] = Path(str(found["definitions"]))
    return settings.model_copy(update=found) if found else settings


def _process_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
