"""The whole local stack: broker, Redis and (for `feature-service up`) the API.

`EmbeddedStack` starts the servers on free loopback ports (and a schema registry when a
source of its definitions asks for one without a URL, `embedded.schema_registry`),
keeps their logs under
`<stores>/logs/`, and describes itself in `<stores>/stack.json` (servers, API, the
definitions and the offline store it runs with) so that commands started beside it
(`feature-service produce`, `training-set`, the SDK) find it without any `FS_` setting.
A stack that writes `stack.json` (the one of `feature-service up`) first takes the
folder's lock (`embedded.stack_lock`): a second one in the same folder stops before it
changes anything, and `stack.json` is only removed by the process that wrote it.

>>> with EmbeddedStack(Path("stores")) as stack:  # doctest: +SKIP
...     print(stack.broker.bootstrap, stack.redis.url)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from types import TracebackType

import redis

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
from feature_service.embedded.schema_registry import EmbeddedSchemaRegistry, asks_for_registry
from feature_service.embedded.stack_lock import StackLock
from feature_service.formats import REGISTRY_URL_VARIABLE

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
        definitions: Path | None = None,
    ) -> None:
        self.stores_dir = stores_dir
        self.definitions = definitions
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
        # Apicurio Registry, for sources whose `schema_registry` gives no URL (and no
        # FS_SCHEMA_REGISTRY_URL names one): started with the stack, its URL exported.
        self.schema_registry: EmbeddedSchemaRegistry | None = None
        if (
            definitions is not None
            and not os.environ.get(REGISTRY_URL_VARIABLE)
            and asks_for_registry(definitions)
        ):
            self.schema_registry = EmbeddedSchemaRegistry(self.log_dir)
        self.api_url: str | None = None
        self.write_stack_file = write_stack_file
        self.lock = StackLock(stores_dir)

    @property
    def stack_file(self) -> Path:
        return self.stores_dir / STACK_FILE_NAME

    @property
    def offline_uri(self) -> str:
        """Where its worker writes the offline log: `FS_OFFLINE_URI`, else `<stores>/offline`."""
        return os.environ.get("FS_OFFLINE_URI") or str((self.stores_dir / "offline").absolute())

    def env(self) -> dict[str, str]:
        """Environment for a child process of the service that talks to this stack."""
        env = dict(
            os.environ,
            FS_BROKER_URL=self.broker.bootstrap,
            FS_REDIS_URL=self.redis.url,
            FS_STORES_DIR=str(self.stores_dir),
            FS_OFFLINE_URI=self.offline_uri,
        )
        # Tansu holds a JoinGroup for half the rebalance timeout: keep it short. On Kafka a
        # short session also hands a killed worker's partitions over quickly.
        env.setdefault("FS_REBALANCE_TIMEOUT_S", "4")
        return env

    def claim(self) -> None:
        """Take the stores folder for this stack (a stack that writes `stack.json` only);
        StackInUse, with nothing changed, while another `up` runs there."""
        if self.write_stack_file:
            self.lock.acquire()

    def start(self) -> EmbeddedStack:
        self.claim()
        self.stores_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.broker.start()
            self.redis.start()
            if self.schema_registry is not None:
                self.schema_registry.start()
                os.environ[REGISTRY_URL_VARIABLE] = self.schema_registry.url  # children too
        except BaseException:
            self.stop()
            raise
        self._describe()
        return self

    def start_clean(self) -> str | None:
        """Make the stores agree with a broker that (re)starts; what was done, if anything.

        The one place that decides what a restart of the stack keeps. The offline log and
        the online state (with its committed offsets) describe the events of the broker's
        topics. When the broker keeps its topics across a restart (`keeps_topics`: the
        embedded Kafka broker that found its data folder, beside a Redis that keeps an
        append-only file), they stay true and are kept. A Kafka broker that formatted a
        new data folder starts empty, like the Tansu broker, which is memory-only: its
        topics start empty, and offsets start at 0 again. Kept stores would then disagree with it:
        training sets would return events that online state does not know, and new events
        (numbered from 0 again) would replace the old offline files partition by partition,
        or be skipped as already applied. So online state is emptied and the offline log
        is moved aside to `<offline>.previous` (replacing an older one), not deleted.
        """
        if self.broker.keeps_topics:
            return None
        if self.redis.process is not None and self.redis.process.alive():
            with redis.Redis.from_url(self.redis.url, socket_timeout=5) as client:
                client.flushdb()
        offline = _local_path(self.offline_uri)
        if offline is None:
            return f"kept the offline log at {self.offline_uri} (not a local folder)"
        if not offline.exists() or not any(offline.iterdir()):
            return None
        previous = offline.with_name(offline.name + ".previous")
        if previous.exists():
            shutil.rmtree(previous)
        offline.rename(previous)
        return f"moved the offline log to {previous}"

    def restart_redis(self) -> None:
        """Start Redis again on the same port (empty unless it persists, beside Kafka)."""
        self.redis.stop()
        self.redis.start()

    def restart_broker(self) -> None:
        """Start the broker again on the same port (its clients reconnect there)."""
        self.broker.stop()
        self.broker.start()

    def api_process(self, port: int | None, definitions: Path, workers: int = 1) -> ManagedProcess:
        """A not-yet-started API (`feature-service serve`) bound to loopback: `workers`
        uvicorn processes on its port, one unless asked (not `serve`'s default of one per
        core: tests and benchmarks run several stacks side by side on one machine)."""
        if port is None:
            port = free_port(HOST)
        else:
            ensure_port_free(HOST, port, "the API")
        self.api_url = f"http://{HOST}:{port}"
        self.definitions = definitions
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
                "--workers",
                str(workers),
            ],
            log_path=self.log_dir / "api.log",
            env=env,
        )

    def worker_process(self, definitions: Path) -> ManagedProcess:
        """A not-yet-started stream worker process (`feature-service worker`)."""
        self.definitions = definitions
        env = self.env()
        env["FS_DEFINITIONS"] = str(definitions)
        return ManagedProcess(
            "worker",
            [sys.executable, "-m", "feature_service.cli.main", "worker"],
            log_path=self.log_dir / "worker.log",
            env=env,
        )

    def start_api(
        self, port: int | None, definitions: Path, timeout: float = 60, workers: int = 1
    ) -> None:
        self.api = self.api_process(port, definitions, workers).start()
        self.wait_api(timeout)
        self._describe()

    def wait_api(self, timeout: float = 60) -> None:
        assert self.api is not None and self.api_url is not None
        host, port = self.api_url.removeprefix("http://").split(":")
        self.api.wait_until(lambda: port_open(host, int(port)), timeout, "serving HTTP")

    def _describe(self) -> None:
        if not self.write_stack_file or not self.lock.held:
            return
        self.stack_file.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "broker": self.broker_kind,
                    "broker_url": self.broker.bootstrap,
                    "redis_url": self.redis.url,
                    "api_url": self.api_url,
                    "definitions": (str(self.definitions.absolute()) if self.definitions else None),
                    "offline_uri": self.offline_uri,
                    "schema_registry_url": (
                        self.schema_registry.url if self.schema_registry else None
                    ),
                },
                indent=2,
            )
        )

    def stop(self) -> None:
        """Stop every process this stack started (API first, servers last); remove the
        `stack.json` this process wrote, and only that one; release the folder's lock."""
        if self.write_stack_file and self.lock.held and self._wrote_stack_file():
            self.stack_file.unlink(missing_ok=True)
        for part in (self.api, self.worker, self.redis, self.broker, self.schema_registry):
            if part is not None:
                part.stop()
        registry = self.schema_registry
        if registry is not None and os.environ.get(REGISTRY_URL_VARIABLE) == registry.url:
            del os.environ[REGISTRY_URL_VARIABLE]  # set by start()
        self.lock.release()

    def _wrote_stack_file(self) -> bool:
        try:
            return bool(json.loads(self.stack_file.read_text()).get("pid") == os.getpid())
        except (OSError, ValueError, AttributeError):
            return False

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _local_path(uri: str) -> Path | None:
    """The folder of a local fsspec URI (a path or `file://`); None for other filesystems."""
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    return None if "://" in uri else Path(uri)
