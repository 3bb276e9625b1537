"""A real schema registry for the embedded stack and the tests: Apicurio Registry.

Apicurio Registry speaks the Confluent Schema Registry REST API under
`/apis/ccompat/v7` (what `formats.schema_registry` talks to), keeps its schemas in an
in-memory database by default, and is published on Maven Central as a Quarkus
application (`io.apicurio:apicurio-registry-app`, classifier `all`, a tar.gz of the
`quarkus-app/` layout with `quarkus-run.jar`, ~150 MB).

- Resolved with Maven on first use into `~/.cache/feature-service/apicurio-registry-<v>/`
  (or under `$XDG_CACHE_HOME`), like the Kafka broker's jars; later starts need no network.
- Runs on Java 21 or newer (it is built for 21): `$FS_SCHEMA_REGISTRY_JAVA`, `JAVA_HOME`,
  `java` on PATH, or a JDK under /usr/lib/jvm, the first that is new enough.
- Listens on a free loopback port; stopped with the stack. Nothing is kept across runs.
- `EmbeddedStack` (so `feature-service up`) starts it when a source's `schema_registry`
  gives no `url` and `FS_SCHEMA_REGISTRY_URL` is unset (`asks_for_registry`), and sets
  that variable to its URL for the processes it starts and in `stack.json` for the
  commands started beside it.

>>> registry = EmbeddedSchemaRegistry(Path("stores/logs")).start()  # doctest: +SKIP
>>> registry.url  # doctest: +SKIP
'http://127.0.0.1:40125/apis/ccompat/v7'
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from feature_service.embedded.processes import ManagedProcess, StackError, free_port

HOST = "127.0.0.1"
# 3.3.3's `all` archive is not on Maven Central (3.3.2's is): pinned to one that is.
APICURIO_VERSION = "3.3.2"
JAVA_MAJOR = 21
CCOMPAT_PATH = "/apis/ccompat/v7"
JVM_OPTIONS = ("-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")


def cache_dir(version: str = APICURIO_VERSION) -> Path:
    """Where the application is kept: outside any checkout, shared by all of them."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "feature-service" / f"apicurio-registry-{version}"


def registry_jar(version: str = APICURIO_VERSION) -> Path:
    """`quarkus-run.jar` of the application, resolved through Maven on first use."""
    folder = cache_dir(version)
    done = folder / ".complete"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "w") as lock:  # parallel tests resolve it once
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not done.exists():
                _resolve(folder, version)
    found = sorted(folder.glob("app/**/quarkus-run.jar"))
    if not found:
        raise StackError(f"no quarkus-run.jar in {folder}/app: remove the folder to fetch again")
    return found[0]


def _resolve(folder: Path, version: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "the schema registry (Apicurio Registry) is fetched with Maven on first use, and "
            "`mvn` is not on PATH: install Maven (e.g. apt-get install maven), or give a "
            "registry of your own in the source's `schema_registry.url`"
        )
    staging = folder / "app.partial"
    shutil.rmtree(staging, ignore_errors=True)
    download = folder / "download"
    # The archive alone: its POM names modules Maven Central does not serve.
    argv = [mvn, "-q", "-B", "dependency:copy", f"-DoutputDirectory={download}"]
    argv.append(f"-Dartifact=io.apicurio:apicurio-registry-app:{version}:tar.gz:all")
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired:
        raise StackError("Maven did not fetch Apicurio Registry within 15 minutes") from None
    if result.returncode != 0:
        errors = [ln for ln in result.stdout.splitlines() if "ERROR" in ln]
        why = errors[0] if errors else result.stderr.strip() or f"exit code {result.returncode}"
        raise StackError(
            f"Maven could not fetch io.apicurio:apicurio-registry-app:{version}: {why[:300]}"
        )
    archive = next(download.glob("*.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(staging, filter="data")
    archive.unlink()
    shutil.rmtree(folder / "app", ignore_errors=True)
    staging.rename(folder / "app")
    (folder / ".complete").write_text(version + "\n")


def java_binary(major: int = JAVA_MAJOR) -> str:
    """A `java` of version `major` or newer; StackError in one line if there is none."""
    candidates = [os.environ.get("FS_SCHEMA_REGISTRY_JAVA")]
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    candidates.append(shutil.which("java"))
    candidates += [str(p) for p in sorted(Path("/usr/lib/jvm").glob("*/bin/java"), reverse=True)]
    seen = []
    for java in candidates:
        if not java or java in seen or not Path(java).exists():
            continue
        seen.append(java)
        if _major(java) >= major:
            return java
    raise StackError(
        f"the schema registry (Apicurio Registry) needs Java {major} or newer, and none was "
        f"found (tried {', '.join(seen) or 'no java at all'}): install one, or set "
        "FS_SCHEMA_REGISTRY_JAVA to its `java`"
    )


def _major(java: str) -> int:
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return 0
    found = re.search(r'version "(\d+)', out.stderr + out.stdout)
    return int(found.group(1)) if found else 0


class EmbeddedSchemaRegistry:
    """Apicurio Registry on a loopback port, schemas in memory."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.log_dir = log_dir
        self.port = port
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """The Confluent-compatible API's base URL (a source's `schema_registry.url`)."""
        return f"http://{HOST}:{self.port}{CCOMPAT_PATH}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / "schema-registry.log"

    def start(self, timeout: float = 180.0) -> EmbeddedSchemaRegistry:
        java = java_binary()
        jar = registry_jar()
        if self.port is None:
            self.port = free_port(HOST)
        # Its management interface (health, metrics) is built in: bind it to loopback on
        # a free port too, not to 0.0.0.0:9000.
        argv = [
            java, *JVM_OPTIONS,
            f"-Dquarkus.http.host={HOST}", f"-Dquarkus.http.port={self.port}",
            f"-Dquarkus.management.host={HOST}", f"-Dquarkus.management.port={free_port(HOST)}",
            "-Dquarkus.http.access-log.enabled=false",
            "-jar", str(jar),
        ]  # fmt: skip
        self.process = ManagedProcess(
            "schema-registry", argv, log_path=self.log_path, cwd=jar.parent
        ).start()
        self.process.wait_until(self._answers, timeout, "answering")
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=20)


def asks_for_registry(definitions: Path) -> bool:
    """Whether a source of the definitions under `definitions` names a `schema_registry`
    without a `url` (then the one of `FS_SCHEMA_REGISTRY_URL`, or the embedded one)."""
    from feature_service.definitions import DefinitionError
    from feature_service.definitions.loader import definition_files, parse_definitions_text

    try:
        files = definition_files(definitions)
        parsed = [parse_definitions_text(f.read_text(encoding="utf-8"), str(f)) for f in files]
    except (DefinitionError, OSError, UnicodeDecodeError):
        return False  # loading them says what is wrong
    return any(
        s.schema_registry is not None and s.schema_registry.url is None
        for file in parsed
        for s in file.sources
    )
