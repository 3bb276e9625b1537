"""The built image runs the containers of `k8s/` as written there, and serves exactly what
the same code serves outside a container.

`make image` builds the image; these tests run it with the engine of `make image`, each
container with its manifest's arguments, user, read-only root file system, environment
and mounts (`tests/image/engine.py`), on the host network against the embedded broker and
Redis of the `stack` fixture, and compare its lookups with a worker and API started on
the host from the checkout.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from feature_service.definitions import Registry, load_definitions
from feature_service.embedded import EmbeddedStack, ManagedProcess
from feature_service.embedded.processes import free_port
from feature_service.online.redis_layout import stats_key
from tests.conditions import wait_for
from tests.image.conftest import FIGURES
from tests.image.engine import ContainerEngine, Doc, run_args

pytestmark = [pytest.mark.image, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "definitions"
SAMPLE = DEFINITIONS / "sample" / "transactions.jsonl"
# The settings that point a container at the embedded stack rather than the cluster's
# services; the embedded broker wants a short rebalance timeout (EmbeddedStack.env).
REBALANCE = {"FS_REBALANCE_TIMEOUT_S": "4"}


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def pod_and_container(docs: list[Doc], kind: str, name: str) -> tuple[Doc, Doc]:
    pod = one(docs, kind, name)["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def mount_path(container: Doc, volume: str) -> str:
    (path,) = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == volume]
    return str(path)


def status_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# ------------------------------------------------------------------ the image by itself


def test_help_runs_as_the_unprivileged_user_on_a_read_only_root(
    engine: ContainerEngine, image: str, manifests: list[Doc]
) -> None:
    started = time.monotonic()
    done = engine.run(
        ["run", "--rm", *engine.read_only_options(), *engine.run_options, image, "--help"]
    )
    FIGURES["`feature-service --help` in a new container"] = f"{time.monotonic() - started:.1f} s"
    commands = {"worker", "serve", "backfill", "produce", "training-set"}
    assert all(c in done.stdout for c in commands), done.stdout
    for kind, name in (
        ("StatefulSet", "feature-service-worker"),
        ("Deployment", "feature-service-api"),
        ("Job", "feature-service-backfill"),
    ):
        _, container = pod_and_container(manifests, kind, name)
        assert container["args"][0] in done.stdout, f"{name} runs an unknown command"

    probe = (
        "import importlib.util, json, os, shutil\n"
        "try:\n"
        "    open('/opt/venv/written-at-run-time', 'w')\n"
        "    writable = True\n"
        "except OSError:\n"
        "    writable = False\n"
        "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'writable_root': writable,\n"
        "  'compilers': [c for c in ('gcc', 'cc', 'g++', 'make') if shutil.which(c)],\n"
        "  'test_deps': [m for m in ('pytest', 'hypothesis', 'mypy', 'ruff', 'moto', 'pip')\n"
        "                if importlib.util.find_spec(m)]}))\n"
    )
    out = engine.run(
        [
            "run",
            "--rm",
            *engine.read_only_options(),
            *engine.run_options,
            "--entrypoint",
            "python",
            image,
            "-c",
            probe,
        ]
    ).stdout
    facts = json.loads(out)
    assert facts == {
        "uid": 10001,
        "gid": 10001,
        "writable_root": False,
        "compilers": [],
        "test_deps": [],
    }
    size = engine.run(["image", "inspect", "--format", "{{.Size}}", image]).stdout
    FIGURES["image size"] = f"{int(size) / 1e6:.0f} MB"


def test_image_configuration_is_what_the_manifests_expect(
    engine: ContainerEngine, image: str, manifests: list[Doc]
) -> None:
    config = engine.inspect(image)
    settings = one(manifests, "ConfigMap", "feature-service-config")["data"]
    env = dict(item.split("=", 1) for item in config["Env"])
    _, worker = pod_and_container(manifests, "StatefulSet", "feature-service-worker")
    api_pod, api = pod_and_container(manifests, "Deployment", "feature-service-api")

    assert config["Entrypoint"] == ["feature-service"]
    assert config["Cmd"] == api["args"], "the image's default command is the API's"
    assert config["User"] == f"{api_pod['securityContext']['runAsUser']}:" + str(
        api_pod["securityContext"]["runAsGroup"]
    )
    assert env["FS_DEFINITIONS"] == settings["FS_DEFINITIONS"] == mount_path(api, "definitions")
    assert env["FS_STORES_DIR"] == settings["FS_STORES_DIR"] == mount_path(worker, "state")
    assert config["WorkingDir"] == env["FS_STORES_DIR"]
    assert env["HOME"] == mount_path(api, "tmp") == mount_path(worker, "tmp")
    assert set(config["Volumes"]) == {mount_path(worker, "tmp"), mount_path(worker, "state")}
    ports = {f"{p['containerPort']}/tcp" for c in (worker, api) for p in c.get("ports", [])}
    assert ports <= set(config["ExposedPorts"])
    healthcheck = " ".join(config.get("Healthcheck", {}).get("Test", []))
    assert "/health/live" in healthcheck, "build with --format docker to keep HEALTHCHECK"
    assert {p["httpGet"]["path"] for p in (api["livenessProbe"], worker["livenessProbe"])} == {
        "/health/live"
    }


# --------------------------------------------- worker + API in the image vs on the host


class Containers:
    """Containers this test started, by name, removed at the end whatever happened."""

    def __init__(self, engine: ContainerEngine, image: str, logs: Path) -> None:
        self.engine, self.image, self.logs = engine, image, logs
        self.tag = uuid.uuid4().hex[:8]
        self.names: list[str] = []

    def start(self, name: str, options: list[str], args: list[str]) -> ManagedProcess:
        """`run --rm` in the foreground as a managed process, its output in a log file."""
        full = f"fs-image-{self.tag}-{name}"
        self.names.append(full)
        argv = [*self.engine.command, "run", "--rm", "--name", full, *options, self.image, *args]
        return ManagedProcess(name, argv, log_path=self.logs / f"{name}.log").start()

    def run(self, options: list[str], args: list[str]) -> subprocess.CompletedProcess[str]:
        return self.engine.run(["run", "--rm", *options, self.image, *args], timeout=300)

    def remove_all(self) -> None:
        grace = ["--time", "10"] if self.engine.name == "podman" else []
        for name in self.names:
            self.engine.run(["rm", "--force", *grace, name], check=False, timeout=60)


@pytest.fixture()
def containers(engine: ContainerEngine, image: str, tmp_path: Path) -> Iterator[Containers]:
    started = Containers(engine, image, tmp_path / "logs")
    try:
        yield started
    finally:
        started.remove_all()


def host_process(
    stack: EmbeddedStack, name: str, args: list[str], env: dict[str, str], cwd: Path
) -> ManagedProcess:
    """A `feature-service` command from the checkout, like `feature-service up` starts."""
    cwd.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(
        name,
        [sys.executable, "-m", "feature_service.cli.main", *args],
        log_path=cwd / f"{name}.log",
        env={**stack.env(), **env},
        cwd=cwd,  # the worker's Faust data folder goes into its working directory
    ).start()


def processed(url: str, source: str) -> int:
    """Events of `source` counted in the online store at `url`, accepted or dead-lettered."""
    client = redis.Redis.from_url(url)
    try:
        raw = client.hgetall(stats_key(source))
    finally:
        client.close()
    return int(raw.get(b"events", 0)) + int(raw.get(b"dlq", 0))


def sample_facts() -> tuple[int, float, dict[str, list[str]]]:
    """Lines of the sample, its newest event time, and the entities it names by key."""
    lines, newest = 0, float("-inf")
    keys: dict[str, set[str]] = {"customer_id": set(), "merchant_id": set()}
    for line in SAMPLE.read_text().splitlines():
        if not line.strip():
            continue
        lines += 1
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if isinstance(event.get("ts"), int | float) and not isinstance(event["ts"], bool):
            newest = max(newest, float(event["ts"]))
        for key, seen in keys.items():
            if isinstance(event.get(key), str) and event[key]:
                seen.add(event[key])
    return lines, newest, {k: sorted(v) for k, v in keys.items()}


def lookup(
    api_url: str, registry: Registry, view: str, key: str, ids: list[str], as_of: float
) -> dict[str, Any]:
    """Every feature of `view` for `ids` at `as_of`, as the API answers it."""
    body = {
        "features": [f"{view}:{f.name}" for f in registry.feature_views[view].features],
        "entities": {key: ids},
        "as_of": as_of,
    }
    response = httpx.post(f"{api_url}/get-online-features", json=body, timeout=30)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def assert_same(ours: Any, theirs: Any, where: str = "") -> None:
    """Equal JSON, floats within a relative 1e-9 (sums fold in arrival order)."""
    if isinstance(ours, float) and isinstance(theirs, int | float):
        assert math.isclose(ours, theirs, rel_tol=1e-9), f"{where}: {ours} != {theirs}"
    elif isinstance(ours, dict) and isinstance(theirs, dict):
        assert ours.keys() == theirs.keys(), where
        for k in ours:
            assert_same(ours[k], theirs[k], f"{where}.{k}")
    elif isinstance(ours, list) and isinstance(theirs, list):
        assert len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"


def redis_db(url: str, db: int) -> str:
    return url.rsplit("/", 1)[0] + f"/{db}"


@pytest.mark.timeout(900)
def test_worker_and_api_in_the_image_serve_what_the_host_serves(
    engine: ContainerEngine,
    containers: Containers,
    stack: EmbeddedStack,
    manifests: list[Doc],
    tmp_path: Path,
) -> None:
    registry = load_definitions(DEFINITIONS)
    settings = one(manifests, "ConfigMap", "feature-service-config")["data"]
    group = f"fs-image-{containers.tag}"
    in_image = redis_db(stack.redis.url, 2)  # one pipeline per Redis database
    on_host = redis_db(stack.redis.url, 3)
    for url in (in_image, on_host):
        with redis.Redis.from_url(url) as client:
            client.flushdb()
    state = tmp_path / "state"  # the worker's volume claim
    state.mkdir()
    state.chmod(0o777)  # written by uid 10001, as root or rootless
    mounts = {"definitions": DEFINITIONS, "state": state}
    stack_env = {
        "FS_BROKER_URL": stack.broker.bootstrap,
        "FS_REDIS_URL": in_image,
        "FS_CONSUMER_GROUP": group,
        **REBALANCE,
    }

    # The manifests' worker and API, with their ports moved to free loopback ones.
    worker_pod, worker = pod_and_container(manifests, "StatefulSet", "feature-service-worker")
    health = free_port()
    worker_env = {**stack_env, "FS_HEALTH_HOST": "127.0.0.1", "FS_HEALTH_PORT": str(health)}
    opts = run_args(worker_pod, worker, settings, worker_env, mounts, engine)
    container_worker = containers.start("worker", opts, worker["args"])
    worker_url = f"http://127.0.0.1:{health}"

    api_pod, api = pod_and_container(manifests, "Deployment", "feature-service-api")
    port = free_port()
    opts = run_args(api_pod, api, settings, stack_env, mounts, engine)
    started = time.monotonic()
    container_api = containers.start(
        "api", opts, [*api["args"], "--host", "127.0.0.1", "--port", str(port)]
    )
    api_url = f"http://127.0.0.1:{port}"
    live, ready = api["livenessProbe"]["httpGet"]["path"], api["readinessProbe"]["httpGet"]["path"]
    wait_for(lambda: status_ok(api_url + live), 120, "the API in the image", container_api)
    FIGURES[f"API in a new container: `{engine.name} run` to /health/live 200"] = (
        f"{time.monotonic() - started:.1f} s"
    )
    wait_for(lambda: status_ok(api_url + ready), 60, "the API to be ready", container_api)
    ready_path = worker["readinessProbe"]["httpGet"]["path"]
    wait_for(lambda: status_ok(worker_url + ready_path), 120, "the worker", container_worker)

    # The same definitions run on the host: another consumer group, another database.
    host_env = {
        "FS_REDIS_URL": on_host,
        "FS_CONSUMER_GROUP": f"{group}-host",
        "FS_OFFLINE_URI": str(tmp_path / "host" / "offline"),
        "FS_DEFINITIONS": str(DEFINITIONS),
    }
    host_worker = host_process(stack, "worker", ["worker"], host_env, tmp_path / "host")
    host_port = free_port()
    host_api = host_process(
        stack,
        "api",
        ["serve", "--host", "127.0.0.1", "--port", str(host_port)],
        host_env,
        tmp_path / "host",
    )
    host_url = f"http://127.0.0.1:{host_port}"
    wait_for(lambda: status_ok(host_url + ready), 120, "the API on the host", host_api)

    # The bundled sample, sent from the image with the definitions mounted as in a pod.
    sample = f"{mount_path(api, 'definitions')}/sample/{SAMPLE.name}"
    sent = containers.run(
        run_args(api_pod, api, settings, stack_env, mounts, engine),
        ["produce", "transactions", sample],
    )
    lines, as_of, ids = sample_facts()
    assert f"sent {lines} events" in sent.stdout, sent.stdout + sent.stderr
    for url, process in ((in_image, container_worker), (on_host, host_worker)):
        wait_for(
            lambda url=url: processed(url, "transactions") >= lines,  # type: ignore[misc]
            180,
            f"the sample to be processed ({process.name} at {url})",
            process,
        )
    assert processed(in_image, "transactions") == processed(on_host, "transactions") == lines

    for view, key in (("customer_txn", "customer_id"), ("merchant_txn", "merchant_id")):
        ours = lookup(api_url, registry, view, key, ids[key], as_of)
        theirs = lookup(host_url, registry, view, key, ids[key], as_of)
        assert_same(ours, theirs, view)
        # Not two empty answers: the results are the join key, then features in order.
        names = ours["metadata"]["feature_names"]
        counts = ours["results"][names.index("txn_count_7d")]["values"]
        assert len(counts) == len(ids[key]) and sum(counts) > 0, f"{view}: {counts[:5]}"

    # The container worker wrote the offline log into its volume, not into the image.
    assert list((state / "offline").rglob("*.parquet")), "no offline Parquet in the volume"

    # The manifests' backfill Job: only /tmp writable; the offline log (S3 in a cluster)
    # is the worker's volume, mounted read-only where the image's FS_OFFLINE_URI points.
    job_pod, job = pod_and_container(manifests, "Job", "feature-service-backfill")
    opts = run_args(job_pod, job, settings, stack_env, mounts, engine)
    opts += ["--volume", f"{state}:{mount_path(worker, 'state')}:ro"]
    done = containers.run(opts, job["args"])
    assert done.returncode == 0, done.stderr
    assert f"backfilled {job['args'][-1]}" in done.stdout, done.stdout
    assert "entities already done" in done.stdout, done.stdout

    for process in (container_worker, container_api, host_worker, host_api):
        assert process.alive(), f"{process.name} died:\n{process.log_tail(40)}"
        process.stop()
