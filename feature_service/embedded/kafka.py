"""A real Apache Kafka broker for the embedded stack: KRaft, one node, data on disk.

`feature-service up --broker kafka` (or `FS_EMBEDDED_BROKER=kafka`) runs this instead of
the memory-only Tansu broker: the same code paths as a production cluster, and topics,
records and committed offsets that outlive a restart.

- The jars of Apache Kafka (`KAFKA_VERSION`) are resolved with Maven on first use into
  a cache outside the checkout (`~/.cache/feature-service/kafka-<version>/`, or under
  `$XDG_CACHE_HOME`); later starts use the cache and need no network.
- The broker runs `kafka.Kafka` on Java 17+ with a generated `server.properties`: one
  node that is broker and controller, loopback ports, `log.dirs` under the given data
  folder, no automatic topic creation, and no initial rebalance delay (a consumer group
  forms at once, as the tests and `up` expect).
- The data folder is formatted (the storage tool) the first time only, so that a
  restart keeps topics and offsets; `keeps_topics` says whether it did.

>>> kafka = EmbeddedKafka(Path("stores/kafka"), Path("stores/logs")).start()  # doctest: +SKIP
>>> kafka.bootstrap  # doctest: +SKIP
'127.0.0.1:40123'
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from feature_service.embedded.processes import (
    ManagedProcess,
    StackError,
    ensure_port_free,
    free_port,
)

HOST = "127.0.0.1"
# Kafka 4.1 brokers run on Java 17 (4.x needs 17+); pinned so every machine runs the same.
KAFKA_VERSION = "4.1.0"
_LOG4J_VERSION = "2.24.3"
_SLF4J_VERSION = "2.0.17"
# Small heap: the machines running the stack and the tests have two shared cores.
JVM_OPTIONS = ("-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", "-Djava.awt.headless=true")
_READY_LINE = "Kafka Server started"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>feature-service</groupId>
  <artifactId>embedded-kafka</artifactId>
  <version>{version}</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId>
      <version>{slf4j}</version>
    </dependency>
  </dependencies>
</project>
"""

# WARN and up, plus the one INFO line that says the broker is ready.
_LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
logger.ready.name = kafka.server.KafkaRaftServer
logger.ready.level = INFO
"""


def cache_dir(version: str = KAFKA_VERSION) -> Path:
    """Where the jars of `version` are kept: outside any checkout, shared by all of them."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "feature-service" / f"kafka-{version}"


def java_binary() -> str:
    """`java` (17 or newer) from JAVA_HOME or PATH; StackError in one line otherwise."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise StackError(
            "the Kafka broker needs Java 17 or newer, and `java` is not on PATH: install a "
            "JDK (e.g. apt-get install openjdk-17-jre-headless) or use --broker tansu"
        )
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StackError(f"cannot run {java} -version: {exc}") from None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = int(found.group(1)) if found else 0
    if major == 1 and found and found.group(2):  # "1.8.0" is Java 8
        major = int(found.group(2))
    if major < 17:
        raise StackError(
            f"the Kafka broker needs Java 17 or newer; {java} is Java {major or '?'}: "
            "install a newer JDK or use --broker tansu"
        )
    return java


def kafka_classpath(version: str = KAFKA_VERSION) -> str:
    """The broker's classpath, its jars resolved through Maven on first use."""
    folder = cache_dir(version)
    libs = folder / "libs"
    done = folder / ".complete"
    if done.exists():
        return f"{libs}/*"
    folder.mkdir(parents=True, exist_ok=True)
    # Two processes starting a broker at once (parallel tests) resolve the jars once.
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            _resolve(folder, version)
    return f"{libs}/*"


def _resolve(folder: Path, version: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            f"the Kafka broker's jars are fetched with Maven on first use, and `mvn` is not "
            f"on PATH: install Maven (e.g. apt-get install maven), or put the jars of "
            f"org.apache.kafka:kafka_2.13:{version} in {folder / 'libs'} and touch "
            f"{folder / '.complete'}, or use --broker tansu"
        )
    pom = folder / "pom.xml"
    pom.write_text(_POM.format(version=version, log4j=_LOG4J_VERSION, slf4j=_SLF4J_VERSION))
    staging = folder / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StackError("Maven did not resolve the Kafka jars within 15 minutes") from None
    if result.returncode != 0:
        errors = [ln for ln in result.stdout.splitlines() if "ERROR" in ln] or [
            result.stderr.strip()
        ]
        raise StackError(
            f"Maven could not resolve org.apache.kafka:kafka_2.13:{version}: "
            f"{errors[0][:300] if errors else 'exit code ' + str(result.returncode)}"
        )
    libs = folder / "libs"
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    (folder / ".complete").write_text(version + "\n")


def random_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, never
    starting with "-" (as Kafka's own `Uuid.randomUuid`): `kafka-storage format -t -x...`
    would read such an id as an option, one id in 64."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class EmbeddedKafka:
    """An Apache Kafka broker (KRaft, one node) on loopback; data under `data_dir`.

    `extra_listeners` adds listeners (name -> (security protocol, port)), e.g. a
    SASL_SSL one, with their settings in `extra_properties`; `scram_users` are SCRAM
    credentials created when the storage is formatted (`SCRAM-SHA-512=[name=u,password=p]`).
    """

    # Whether this start found the topics of an earlier run (False on a first start).
    keeps_topics: bool

    def __init__(
        self,
        data_dir: Path,
        log_dir: Path,
        port: int | None = None,
        extra_listeners: Mapping[str, tuple[str, int]] | None = None,
        extra_properties: Mapping[str, str] | None = None,
        scram_users: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.port = port
        self.controller_port: int | None = None
        self.extra_listeners = dict(extra_listeners or {})
        self.extra_properties = dict(extra_properties or {})
        self.scram_users = list(scram_users)
        self.process: ManagedProcess | None = None
        self.keeps_topics = True

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / "kafka.log"

    def server_properties(self) -> str:
        """The broker's configuration (ports must be chosen)."""
        assert self.port is not None and self.controller_port is not None
        listeners = {
            "PLAINTEXT": ("PLAINTEXT", self.port),
            "CONTROLLER": ("PLAINTEXT", self.controller_port),
            **self.extra_listeners,
        }
        advertised = [f"{n}://{HOST}:{p}" for n, (_, p) in listeners.items() if n != "CONTROLLER"]
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listeners": ",".join(f"{n}://{HOST}:{p}" for n, (_, p) in listeners.items()),
            "advertised.listeners": ",".join(advertised),
            "listener.security.protocol.map": ",".join(
                f"{n}:{proto}" for n, (proto, _) in listeners.items()
            ),
            "log.dirs": str((self.data_dir / "data").resolve()),
            "num.partitions": "1",
            # Topics are created by `ensure_topics` with the partitions the definitions ask.
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # A group forms as soon as its first member joins (the default waits 3 s).
            "group.initial.rebalance.delay.ms": "0",
            # The embedded stack runs workers with a short session (FS_REBALANCE_TIMEOUT_S=4)
            # so that a killed worker's partitions move on quickly; Kafka's floor is 6 s.
            "group.min.session.timeout.ms": "1000",
            # Local runs keep what they were sent; production sets its own retention.
            "log.retention.hours": "-1",
            "log.retention.bytes": "-1",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "log.cleaner.threads": "1",
            **self.extra_properties,
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def start(self, timeout: float = 90.0) -> EmbeddedKafka:
        java = java_binary()
        classpath = kafka_classpath()
        if self.port is None:
            self.port = free_port(HOST)
        else:
            ensure_port_free(HOST, self.port, "the Kafka broker")
        if self.controller_port is None:
            self.controller_port = free_port(HOST)
        else:
            ensure_port_free(HOST, self.controller_port, "the Kafka controller")
        config = self.data_dir / "config"
        config.mkdir(parents=True, exist_ok=True)
        properties = config / "server.properties"
        properties.write_text(self.server_properties())
        log4j = config / "log4j2.properties"
        log4j.write_text(_LOG4J2)
        base = [java, *JVM_OPTIONS, f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]
        formatted = (self.data_dir / "data" / "meta.properties").exists()
        self.keeps_topics = formatted
        if not formatted:
            self._format(base, properties)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.process = ManagedProcess(
            "kafka", [*base, "kafka.Kafka", str(properties)], log_path=self.log_path
        ).start()
        self.process.wait_until(lambda: self._said_ready(offset), timeout, "ready")
        return self

    def _format(self, base: list[str], properties: Path) -> None:
        argv = [*base, "kafka.tools.StorageTool", "format", "--ignore-formatted"]
        argv += ["-t", random_cluster_id(), "-c", str(properties)]
        for user in self.scram_users:
            argv += ["--add-scram", user]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            why = (result.stderr or result.stdout).strip().splitlines()
            raise StackError(
                f"cannot format the Kafka storage in {self.data_dir}: {why[-1] if why else '?'}"
            )

    def _said_ready(self, offset: int) -> bool:
        with contextlib.suppress(OSError), open(self.log_path, "rb") as log:
            log.seek(offset)
            return _READY_LINE.encode() in log.read()
        return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)  # a clean shutdown flushes logs and offsets
