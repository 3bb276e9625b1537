"""The whole local stack: broker, Redis and (for `feature-service up`) the API.

`EmbeddedStack` starts the servers on free loopback ports, keeps their logs under
`<stores>/logs/`, and describes itself in `<stores>/stack.json` so that commands started
beside it (`feature-service produce`, the SDK) find it without any `FS_` setting.

>>> with EmbeddedStack(Path("stores")) as stack:  # doctest: +SKIP
...     print(stack.broker.bootstrap, stack.redis.url)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import TracebackType

from feature_service.core.config import STACK_FILE_NAME, EmbeddedBrokerKind, Settings
from feature_service.embedded.broker import EmbeddedBroker
from feature_service.embedded.kafka import EmbeddedKafka
from feature_service.embedded.processes import (
    ManagedProcess,
    ensure_port_free,
    free_port,
    port_open,
)
from feature_service.embedded.redis_server import EmbeddedRedis

HOST = "127.0.0.1"


class EmbeddedStack:
    """Broker + Redis as real processes; a context manager that always cleans up."""

    def __init__(
        self,
        stores_dir: Path,
        broker_port: int | None = None,
        redis_port: int | None = None,
        write_stack_file: bool = False,
        broker: EmbeddedBrokerKind | None = None,
    ) -> None:
        self.stores_dir = stores_dir
        self.log_dir = stores_dir / "logs"
        # Which broker: Tansu (memory-only, the default) or Apache Kafka (data on disk).
        self.broker_kind: EmbeddedBrokerKind = broker or Settings().embedded_broker
        self.broker: EmbeddedBroker | EmbeddedKafka
        if self.broker_kind == "kafka":
            self.broker = EmbeddedKafka(stores_dir / "kafka", self.log_dir, broker_port)
        else:
            self.broker = EmbeddedBroker(self.log_dir, broker_port)
        # Redis keeps its data on disk beside a broker that does: a restart keeps both.
        self.redis = EmbeddedRedis(
            stores_dir / "redis", self.log_dir, redis_port, persist=self.broker_kind == "kafka"
        )
        self.api: ManagedProcess | None = None
        self.worker: ManagedProcess | None = None
        self.api_url: str | None = None
        self.write_stack_file = write_stack_file

    @property
    def stack_file(self) -> Path:
        return self.stores_dir / STACK_FILE_NAME

    def env(self) -> dict[str, str]:
        """Environment for a child process of the service that talks to this stack."""
        env = dict(
            os.environ,
            FS_BROKER_URL=self.broker.bootstrap,
            FS_REDIS_URL=self.redis.url,
            FS_STORES_DIR=str(self.stores_dir),
        )
        env.setdefault("FS_OFFLINE_URI", str(self.stores_dir / "offline"))
        # Tansu holds a JoinGroup for half the rebalance timeout: keep it short. On Kafka a
        # short session also hands a killed worker's partitions over quickly.
        env.setdefault("FS_REBALANCE_TIMEOUT_S", "4")
        return env

    def start(self) -> EmbeddedStack:
        self.stores_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.broker.start()
            self.redis.start()
        except BaseException:
            self.stop()
            raise
        self._describe()
        return self

    def api_process(self, port: int | None, definitions: Path) -> ManagedProcess:
        """A not-yet-started API process (`feature-service serve`) bound to loopback."""
        if port is None:
            port = free_port(HOST)
        else:
            ensure_port_free(HOST, port, "the API")
        self.api_url = f"http://{HOST}:{port}"
        env = self.env()
        env["FS_DEFINITIONS"] = str(definitions)
        return ManagedProcess(
            "api",
            [
                sys.executable,
                "-m",
                "feature_service.cli.main",
                "serve",
                "--host",
                HOST,
                "--port",
                str(port),
            ],
            log_path=self.log_dir / "api.log",
            env=env,
        )

    def worker_process(self, definitions: Path) -> ManagedProcess:
        """A not-yet-started stream worker process (`feature-service worker`)."""
        env = self.env()
        env["FS_DEFINITIONS"] = str(definitions)
        return ManagedProcess(
            "worker",
            [sys.executable, "-m", "feature_service.cli.main", "worker"],
            log_path=self.log_dir / "worker.log",
            env=env,
        )

    def start_api(self, port: int | None, definitions: Path, timeout: float = 60) -> None:
        self.api = self.api_process(port, definitions).start()
        self.wait_api(timeout)
        self._describe()

    def wait_api(self, timeout: float = 60) -> None:
        assert self.api is not None and self.api_url is not None
        host, port = self.api_url.removeprefix("http://").split(":")
        self.api.wait_until(lambda: port_open(host, int(port)), timeout, "serving HTTP")

    def _describe(self) -> None:
        if not self.write_stack_file:
            return
        self.stack_file.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "broker": self.broker_kind,
                    "broker_url": self.broker.bootstrap,
                    "redis_url": self.redis.url,
                    "api_url": self.api_url,
                },
                indent=2,
            )
        )

    def stop(self) -> None:
        """Stop every process this stack started (API first, servers last)."""
        if self.write_stack_file and self.stack_file.exists():
            self.stack_file.unlink(missing_ok=True)
        for part in (self.api, self.worker, self.redis, self.broker):
            if part is not None:
                part.stop()

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
