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
from typing import Annotated, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from feature_service.core.kafka import KafkaConnection, SaslMechanism, SecurityProtocol

STACK_FILE_NAME = "stack.json"
EmbeddedBrokerKind = Literal["tansu", "kafka"]
# What an API key may do (DESIGN.md "Access"; enforced by `api.access`): `read` lookups,
# the registry, status and training sets; `write` /push; `admin` registry changes.
ApiScope = Literal["read", "write", "admin"]
API_SCOPES: tuple[str, ...] = tuple(sorted(get_args(ApiScope)))
LISTED_KEY_SCOPES: frozenset[ApiScope] = frozenset({"read", "write"})  # `FS_API_KEYS='["k"]'`


class Settings(BaseSettings):
    """Every setting of the services, CLI and SDK (environment prefix `FS_`)."""

    model_config = SettingsConfigDict(env_prefix="FS_", extra="ignore")

    broker_url: str | None = Field(
        default=None, description="Kafka bootstrap servers, e.g. `127.0.0.1:9092`."
    )
    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        description="How clients talk to Kafka: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        default="PLAIN", description="SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(default=None, description="SASL password.")
    kafka_ssl_ca_file: Path | None = Field(
        default=None, description="PEM CA bundle for the brokers' certificates (default: system)."
    )
    kafka_ssl_cert_file: Path | None = Field(
        default=None, description="PEM client certificate (mutual TLS)."
    )
    kafka_ssl_key_file: Path | None = Field(
        default=None, description="PEM private key of the client certificate."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of an encrypted client key."
    )
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="Check that broker certificates name the host."
    )
    embedded_broker: EmbeddedBrokerKind = Field(
        default="tansu",
        description="The broker `up` and the tests embed: `tansu` (memory-only) or `kafka`.",
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
    api_keys: Annotated[dict[str, frozenset[ApiScope]], NoDecode] = Field(
        default_factory=dict,
        description='API keys and their scopes, JSON: `{"k1": ["read"], "k2": ["read", '
        '"write"]}` (a list of keys grants read and write). If set, every endpoint but /, '
        "/docs, /openapi.json, /health and /metrics needs one (`X-API-Key`).",
    )
    max_entities_per_request: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1,
        description="Largest request body the API reads (413 beyond): a push of 1,000 rows "
        "x 100 columns of values up to 80 bytes of JSON.",
    )
    api_key_failures_per_minute: int = Field(
        default=10,
        ge=1,
        description="Failed API keys a client address may send a minute (a bucket of that "
        "many, refilled at that rate); beyond, its requests get 429 with Retry-After.",
    )
    log_level: str = Field(default="warning")
    rebalance_timeout_s: int = Field(
        default=60, ge=2, description="Consumer group rebalance/session timeout of the worker."
    )
    max_poll_records: int = Field(
        default=20_000, ge=1, description="Most records the worker fetches per poll."
    )
    flush_events: int = Field(
        default=200_000,
        ge=1,
        description="Pending events that make the worker commit (a worker behind waits for them).",
    )
    state_cache_entities: int = Field(
        default=20_000,
        ge=0,
        description="Entity states per view the worker keeps in memory (others re-read).",
    )
    state_head_events: int = Field(
        default=1024,
        ge=2,
        description=(
            "Events an entity's online state keeps raw above its compaction horizon; a busier "
            "entity is compacted to per-hop aggregates below it, and `as_of` before the "
            'horizon is refused (DESIGN.md "Bounded state").'
        ),
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

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys_and_scopes(cls, value: object) -> dict[str, frozenset[str]]:
        return parse_api_keys(value)

    @property
    def kafka(self) -> KafkaConnection:
        """How to reach the broker (`FS_BROKER_URL` and `FS_KAFKA_*`); ValueError if unset."""
        if not self.broker_url:
            raise ValueError("no broker: set FS_BROKER_URL or start `feature-service up`")
        return KafkaConnection(
            self.broker_url,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=_secret(self.kafka_sasl_password),
            ca_file=self.kafka_ssl_ca_file,
            cert_file=self.kafka_ssl_cert_file,
            key_file=self.kafka_ssl_key_file,
            key_password=_secret(self.kafka_ssl_key_password),
            check_hostname=self.kafka_ssl_check_hostname,
        )

    @property
    def stack_file(self) -> Path:
        """The file a running `feature-service up` describes itself in."""
        return self.stores_dir / STACK_FILE_NAME


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, completed from a running embedded stack if any.

    Explicit settings always win over what the stack file says.
    """
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:  # one line a setting, naming its variable, no value
        raise ValueError("; ".join(_setting_errors(exc))) from None
    try:
        stack = json.loads(settings.stack_file.read_text())
    except (OSError, ValueError):
        return settings
    if not _process_alive(stack.get("pid")):
        return settings  # a stale file left by a stack that was killed
    registry_url = stack.get("schema_registry_url")
    if isinstance(registry_url, str):  # read when definitions load (definitions.source_formats)
        os.environ.setdefault("FS_SCHEMA_REGISTRY_URL", registry_url)
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


def parse_api_keys(value: object) -> dict[str, frozenset[str]]:
    """`FS_API_KEYS` (JSON text, or its value) as key -> scopes; ValueError naming what is
    wrong by the key's position, never the key.

    >>> parse_api_keys('{"k1": ["read"]}')
    {'k1': frozenset({'read'})}
    >>> sorted(parse_api_keys('["k1"]')["k1"])
    ['read', 'write']
    >>> parse_api_keys('{"k1": ["reed"]}')
    Traceback (most recent call last):
    ...
    ValueError: the 1st key has an unknown scope 'reed' (scopes: admin, read, write)
    """
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("not JSON") from None
    if isinstance(value, list | tuple):  # the form before scopes: read and write
        pairs = [(key, sorted(LISTED_KEY_SCOPES)) for key in value]
    elif isinstance(value, dict):
        pairs = list(value.items())
    else:
        raise ValueError("a JSON object of key -> scopes or a list of keys")
    known = ", ".join(API_SCOPES)
    keys: dict[str, frozenset[str]] = {}
    for number, (key, scopes) in enumerate(pairs, start=1):
        which = f"the {_ordinal(number)} key"
        if not isinstance(key, str):
            raise ValueError(f"{which} is not a string")
        if not key:
            raise ValueError(f"{which} is empty")
        if not isinstance(scopes, list | tuple | set | frozenset):
            raise ValueError(f"{which}'s scopes must be a list")
        if not scopes:
            raise ValueError(f"{which} has no scope (scopes: {known})")
        for scope in scopes:
            if scope not in API_SCOPES:
                raise ValueError(f"{which} has an unknown scope {scope!r} (scopes: {known})")
        keys[key] = frozenset(scopes)
    return keys


def _ordinal(number: int) -> str:
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    if 10 <= number % 100 <= 20:
        suffix = "th"
    return f"{number}{suffix}"


def _setting_errors(exc: ValidationError) -> list[str]:
    """Each error as `FS_NAME: what is wrong` (the value is left out: it may be a secret)."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        name = f"FS_{str(error['loc'][0]).upper()}" if error["loc"] else "settings"
        context = error.get("ctx") or {}
        message = str(context["error"]) if error["type"] == "value_error" else error["msg"]
        lines.append(f"{name}: {message}")
    return lines


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


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
