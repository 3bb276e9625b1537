"""The last definitions a worker accepted, kept in Redis, so that a service started
beside definitions that do not load runs them instead of crash-looping.

A worker records the definitions it runs once it has recorded their view layouts
(`online.view_layouts.claim_layouts`), i.e. once it has accepted them for the state it
writes. A worker or an API started while the files on disk do not load (a half-written
or wrong file in `definitions/`) loads these instead, logs one ERROR line saying so and
shows `definitions: refused` on its /health with the files and reasons; when the files
are fixed, the watcher picks them up as usual (`definitions.watch`). With nothing
recorded, or Redis unreachable, it stops with the reason as before.

Redis rather than a file under the stores folder: every worker and API replica of a
deployment reads the same record, wherever it runs. The key is per consumer group
(`FS_CONSUMER_GROUP`), which the workers and APIs of one deployment share:

- `fs:accepted:{<consumer group>}` (string): JSON
  `{"files": {"transactions.yaml": "<YAML text>", ...}, "accepted": <epoch s>,
  "by": "<host>:<pid>"}`; file names are relative to the definitions folder.

>>> registry = load_or_last_accepted(settings, Path("definitions"), watcher)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from feature_service.core.config import Settings
from feature_service.definitions import DefinitionError, Registry, load_definitions
from feature_service.definitions.loader import load_definitions_texts
from feature_service.definitions.watch import DefinitionsWatcher, one_line, refusal

log = logging.getLogger(__name__)

_ERRORS = (RedisError, RedisClusterException, OSError, ValueError, KeyError, TypeError)


def accepted_key(consumer_group: str) -> str:
    """The Redis key of the record of one deployment (its consumer group)."""
    return f"fs:accepted:{{{consumer_group}}}"


@dataclass(frozen=True)
class AcceptedDefinitions:
    """Definitions a worker accepted: the files' texts, when and by whom."""

    files: dict[str, str]
    accepted: float
    by: str

    def registry(self, path: Path) -> Registry:
        """The registry of these files as if they were under `path`."""
        return load_definitions_texts(self.files, path)

    @property
    def described(self) -> str:
        """When and by whom, for a log line or /health."""
        at = datetime.fromtimestamp(self.accepted, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"recorded {at} by worker {self.by}"


def _client(settings: Settings) -> Any:
    assert settings.redis_url
    options: dict[str, Any] = {"socket_connect_timeout": 2.0, "socket_timeout": 5.0}
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url, **options)
    return redis.Redis.from_url(settings.redis_url, **options)


def last_accepted(settings: Settings) -> AcceptedDefinitions | None:
    """The definitions last recorded for this deployment; None if there are none or
    they cannot be read (the reason is logged)."""
    if not settings.redis_url:
        return None
    try:
        client = _client(settings)
        try:
            raw = client.get(accepted_key(settings.consumer_group))
        finally:
            client.close()
        if raw is None:
            return None
        record = orjson.loads(raw)
        files = {str(k): str(v) for k, v in dict(record["files"]).items()}
        return AcceptedDefinitions(files, float(record["accepted"]), str(record["by"]))
    except _ERRORS as exc:
        log.warning("cannot read the last accepted definitions from Redis: %s", exc)
        return None


def record_accepted(settings: Settings, registry: Registry) -> None:
    """Record `registry`'s files as the last accepted definitions (a worker calls this
    once it has recorded their view layouts). Best effort: a failure is logged, never
    raised, as a missed record only matters to a later start beside bad files."""
    if not settings.redis_url or not registry.texts:
        return
    try:
        client = _client(settings)
        try:
            key = accepted_key(settings.consumer_group)
            raw = client.get(key)
            if raw is not None and orjson.loads(raw).get("files") == registry.texts:
                return  # the same definitions: keep when and by whom they were accepted
            record = {
                "files": registry.texts,
                "accepted": time.time(),
                "by": f"{socket.gethostname()}:{os.getpid()}",
            }
            client.set(key, orjson.dumps(record))
        finally:
            client.close()
    except _ERRORS as exc:
        log.warning("cannot record the accepted definitions in Redis: %s", exc)


def load_or_last_accepted(
    settings: Settings, path: Path, watcher: DefinitionsWatcher | None = None
) -> Registry:
    """The definitions under `path`; if they do not load, the last accepted ones (with
    one ERROR log line, and `watcher.refused` set to the files and reasons). Raises the
    DefinitionError of `path` when nothing accepted can be run instead."""
    try:
        return load_definitions(path)
    except DefinitionError as exc:
        error = exc
    accepted = last_accepted(settings)
    if accepted is None:
        raise error
    try:
        registry = accepted.registry(path)
    except DefinitionError as exc:  # e.g. recorded by a version that allowed more
        log.warning("the last accepted definitions do not load either: %s", one_line(str(exc)))
        raise error from None
    reason = refusal(path, error, f"the last accepted definitions ({accepted.described})")
    if watcher is not None:
        watcher.refused = reason
    log.error("%s", one_line(reason))
    return registry
