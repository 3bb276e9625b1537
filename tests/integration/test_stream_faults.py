"""Faults an operator meets, against real processes: poison events, a worker paused past
its session (a zombie), a worker killed, Redis restarting empty. Every event accepted
must end up exactly once online and offline, and the worker must never wedge."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import redis
from aiokafka import AIOKafkaConsumer
from fastapi.testclient import TestClient

from feature_service.aggregation.reference import Event
from feature_service.api.app import create_app
from feature_service.core.config import Settings
from feature_service.definitions import FeatureView, Registry, load_definitions
from feature_service.embedded import EmbeddedStack, ManagedProcess
from feature_service.embedded.processes import free_port
from feature_service.embedded.redis_server import EmbeddedRedis
from feature_service.requests import RequestError
from feature_service.stream.push import push_messages
from tests.conditions import wait_for
from tests.integration.streaming import (
    assert_online_equals_brute_force,
    make_events,
    offline_events,
    produce,
    start_worker,
    stats,
)

pytestmark = pytest.mark.integration

# A view keyed by the topic's key (customer) and one that is not (category), so a null
# or empty category is a poison event of the second only.
DEFINITIONS = """
entities:
  - {{name: customer, join_key: customer_id}}
  - {{name: category, join_key: category}}
sources:
  - name: {source}
    topic: {topic}
    timestamp_field: ts
    key: customer_id
    partitions: {partitions}
    schema: {{customer_id: string, amount: float, category: string, online: bool, n: int}}
feature_views:
  - name: cust_{tag}
    source: {source}
    entity: customer
    features:
      - {{name: n_1h, aggregation: count, window: 1h}}
      - {{column: amount, aggregations: [sum, mean, max], windows: [1h, 1d]}}
      - {{name: n_sum_1d, column: n, aggregation: sum, window: 1d}}
      - {{name: last_amount, column: amount, aggregation: last}}
  - name: cat_{tag}
    source: {source}
    entity: category
    features:
      - {{name: n_1h, aggregation: count, window: 1h}}
      - {{column: amount, aggregations: [sum, max], windows: [1h, 1d]}}
      - {{column: customer_id, aggregation: count_distinct, window: 1d}}
"""


def write_definitions(tmp_path: Path, partitions: int) -> tuple[Path, Registry]:
    tag = uuid.uuid4().hex[:8]
    path = tmp_path / "defs" / "defs.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        DEFINITIONS.format(source=f"tx_{tag}", topic=f"tx-{tag}", tag=tag, partitions=partitions)
    )
    return path.parent, load_definitions(path.parent)


def good_events(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed + 1)
    events = [e for e in make_events(n, seed) if isinstance(e, dict)]
    for e in events:
        e["n"] = int(rng.integers(-5, 100))
    return events


def poison_events(after: dict) -> list[dict]:
    """One event of each kind the parser used to accept and the worker then choked on."""
    base = {**after, "customer_id": "poison"}
    return [
        {**base, "customer_id": None, "category": None},  # no view can take it
        {**base, "customer_id": "", "category": ""},  # empty join keys
        {**base, "ts": "3000-01-01T00:00:00Z"},  # beyond what the offline log holds
        {**base, "ts": 1793491500000},  # epoch milliseconds
        {**base, "ts": 1.7e308},
        {**base, "n": 2**63},  # above int64
        {**base, "ts": "2100-01-01T00:00:00Z"},  # far in the future: would make the rest late
    ]


POISON_REASONS = [
    "no feature view can take the event: key field 'customer_id' is null, "
    "key field 'category' is null",
    "no feature view can take the event: key field 'customer_id' is empty, "
    "key field 'category' is empty",
    "timestamp '3000-01-01T00:00:00Z' is outside",
    "timestamp 1793491500000 is outside",
    "timestamp 1.7e+308 is outside",
    f"field 'n': {2**63} is outside the int64 range",
    "ahead of the time the event was written",
]


def expected_by(view: FeatureView, log: pd.DataFrame, key: str) -> dict[str, list[Event]]:
    late = log["event_ts"].to_numpy() < log["_watermark"].to_numpy() - view.allowed_lateness_s
    out: dict[str, list[Event]] = defaultdict(list)
    for row in log[~late].to_dict(orient="records"):
        values = {c: row[c] for c in ("customer_id", "amount", "category", "online", "n")}
        if isinstance(values["amount"], float) and np.isnan(values["amount"]):
            values["amount"] = None
        passes = [True] * len(view.features)
        seq = int(row["_offset"]) * 4096 + int(row["_partition"])
        out[str(row[key])].append(Event(float(row["event_ts"]), seq, values, passes))
    return out


def assert_exact(client: redis.Redis, registry: Registry, log: pd.DataFrame) -> None:
    newest = float(log["event_ts"].max())
    for view in registry.feature_views.values():
        (key,) = view.entity.join_keys
        expected = expected_by(view, log, key)
        checked = assert_online_equals_brute_force(
            client, view, expected, [newest, newest - 1800.5, newest - 30000]
        )
        assert checked == len(expected) * 3 * len(view.features)


def dlq_reasons(stack: EmbeddedStack, topic: str, expected: int) -> list[str]:
    async def read() -> list[str]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=stack.broker.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        got: dict[tuple[int, int], str] = {}
        try:
            async with asyncio.timeout(60):
                while len(got) < expected:
                    batches = await consumer.getmany(timeout_ms=500)
                    for records in batches.values():
                        for m in records:
                            body = json.loads(m.value)
                            got[body["partition"], body["offset"]] = body["reason"]
        finally:
            await consumer.stop()
        return list(got.values())

    return asyncio.run(read())


def test_poison_events_go_to_the_dlq_at_parse_time_and_the_worker_keeps_going(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    definitions, registry = write_definitions(tmp_path, partitions=2)
    source = next(iter(registry.sources.values()))
    events = good_events(6_000, seed=11)
    poison = poison_events(events[2_999])
    offline = tmp_path / "offline"
    client = redis.Redis.from_url(stack.redis.url)
    produce(stack, registry, [*events[:3_000], *poison, *events[3_000:]])
    worker = start_worker(stack, definitions, offline)
    try:
        wait_for(
            lambda: stats(client, registry).get("events", 0) >= len(events),
            120,
            "every good event committed after the poison ones",
            worker,
        )
    finally:
        worker.stop()
    counters = stats(client, registry)
    assert (counters["events"], counters["dlq"]) == (len(events), len(poison))
    reasons = dlq_reasons(stack, source.dlq_topic, len(poison))
    for want in POISON_REASONS:
        assert any(want in got for got in reasons), f"{want!r} not in {reasons}"
    log = offline_events(registry, offline)
    assert len(log) == len(events) and "poison" not in set(log["customer_id"])
    # the year-2100 event did not move the watermark: nothing after it is late
    assert not any(counters.get(f"late:{v}", 0) for v in registry.feature_views)
    assert_exact(client, registry, log)
    # /push refuses the same rows, naming each (the same parser)
    for i, event in enumerate(poison):
        df = {k: [v] for k, v in event.items()}
        with pytest.raises(RequestError, match=re.escape(POISON_REASONS[i])):
            push_messages(registry, source.name, df, 1000)


def test_redis_restarted_empty_is_rebuilt_exactly_even_by_an_idle_worker(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    """Redis restarts with no data after the worker committed every event and went
    idle: nothing new arrives to reveal the loss, yet online state is rebuilt exactly
    (it used to stay empty, and a flush in flight marked events applied that were not)."""
    definitions, registry = write_definitions(tmp_path, partitions=4)
    events = good_events(8_000, seed=14)
    port = free_port()
    store = EmbeddedRedis(tmp_path / "redis-a", tmp_path / "logs-a", port).start()
    client = redis.Redis.from_url(store.url)
    env = {"FS_REDIS_URL": store.url, "FS_FLUSH_INTERVAL_S": "0.3"}
    produce(stack, registry, events)
    worker = start_worker(stack, definitions, tmp_path / "offline", "worker", env)
    try:
        wait_for(lambda: stats(client, registry).get("events", 0) == len(events), 120, "all")
        store.stop()
        store = EmbeddedRedis(tmp_path / "redis-b", tmp_path / "logs-b", port).start()
        client = redis.Redis.from_url(store.url)
        wait_for(
            lambda: stats(client, registry).get("events", 0) == len(events),
            120,
            "online state rebuilt in the empty Redis",
            worker,
        )
    finally:
        worker.stop()
    assert stats(client, registry)["store_resets"] == 4  # each partition, counted once
    assert_exact(client, registry, offline_events(registry, tmp_path / "offline"))
    store.stop()


@pytest.mark.timeout(900)  # ~2 min on a quiet box; bounded, and CI shares the cores
def test_faults_during_a_100k_ingest_with_two_workers_leave_exact_state(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    """SIGKILL, SIGSTOP beyond the session timeout (a zombie that flushes a stale batch
    when it wakes), Redis restarting with empty data, and poison events, in one run."""
    definitions, registry = write_definitions(tmp_path, partitions=4)
    events = good_events(100_000, seed=12)
    poison = poison_events(events[49_999])
    offline = tmp_path / "offline"
    port = free_port()
    store = EmbeddedRedis(tmp_path / "redis-a", tmp_path / "logs-a", port).start()
    client = redis.Redis.from_url(store.url)
    env = {
        "FS_REDIS_URL": store.url,
        "FS_FLUSH_INTERVAL_S": "0.3",
        "FS_FLUSH_EVENTS": "4000",
        "FS_MAX_POLL_RECORDS": "2000",
    }
    workers: list[ManagedProcess] = []

    def committed() -> int:
        try:
            return stats(client, registry).get("events", 0)
        except redis.RedisError:
            return -1

    try:
        produce(stack, registry, events[:25_000])
        workers.append(start_worker(stack, definitions, offline, "worker-a", env))
        workers.append(start_worker(stack, definitions, offline, "worker-b", env))
        wait_for(lambda: committed() >= 8_000, 120, "a first part", workers[0])

        workers[0].kill()  # SIGKILL at whatever point it is
        produce(stack, registry, [*events[25_000:50_000], *poison])
        workers[0] = start_worker(stack, definitions, offline, "worker-a2", env)
        wait_for(lambda: committed() >= 40_000, 180, "more after the SIGKILL", workers[1])

        # worker b pauses past its session; worker a takes its partitions over
        before = committed()
        workers[1].signal(signal.SIGSTOP)
        produce(stack, registry, events[50_000:75_000])
        wait_for(lambda: committed() >= before + 20_000, 180, "a takes over", workers[0])
        workers[1].signal(signal.SIGCONT)  # the zombie wakes with a stale batch

        produce(stack, registry, events[75_000:])
        wait_for(lambda: committed() >= 80_000, 180, "events before Redis goes", workers[0])
        store.stop()  # Redis restarts with empty data, mid-ingest
        store = EmbeddedRedis(tmp_path / "redis-b", tmp_path / "logs-b", port).start()
        client = redis.Redis.from_url(store.url)
        wait_for(lambda: committed() >= len(events), 300, "every event rebuilt", workers[0])
        wait_for(lambda: stats(client, registry).get("dlq", 0) >= len(poison), 60, "the DLQ")
    finally:
        for worker in workers:
            if worker.alive():
                worker.signal(signal.SIGCONT)
            worker.stop()
    counters = stats(client, registry)
    assert (counters["events"], counters["dlq"]) == (len(events), len(poison))
    log = offline_events(registry, offline)
    assert len(log) == len(events), "the offline log has every event exactly once"
    assert not log.duplicated(["_partition", "_offset"]).any()
    assert_exact(client, registry, log)
    store.stop()


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB file system (tmpfs) for the offline log: it fills up like a disk."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs for the full-disk test: {done.stderr!r}")
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_flush_that_keeps_failing_is_reported_failing_and_recovers(
    stack: EmbeddedStack, tmp_path: Path, small_disk: Path
) -> None:
    """A full offline disk: the worker retries (nothing skipped), leaves no temporary
    files, says `failing` with the error on its /health, its heartbeat and the API's
    /health and /metrics; once space is freed it commits every event and says ok."""
    definitions, registry = write_definitions(tmp_path, partitions=1)
    events = good_events(3_000, seed=13)
    filler = small_disk / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    client = redis.Redis.from_url(stack.redis.url)
    port = free_port()
    worker = start_worker(
        stack,
        definitions,
        small_disk / "offline",
        "worker-full",
        {"FS_HEALTH_PORT": str(port)},
        log_dir=tmp_path,
    )
    settings = Settings(
        redis_url=stack.redis.url, broker_url=stack.broker.bootstrap, definitions=definitions
    )

    def worker_health() -> tuple[int, dict]:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
        except httpx.HTTPError:
            return 0, {}
        return response.status_code, response.json()

    try:
        produce(stack, registry, events)
        wait_for(lambda: worker_health()[1].get("status") == "failing", 90, "failing", worker)
        code, body = worker_health()
        assert code == 503 and "No space left on device" in body["failing"]["error"]
        with TestClient(create_app(settings, registry)) as api:
            wait_for(
                lambda: api.get("/health").json()["dependencies"]["worker"]["status"] == "failing",
                30,
                "the API reports the failing worker",
            )
            assert (
                "No space left on device"
                in (api.get("/health").json()["dependencies"]["worker"]["detail"])
            )
            source = next(iter(registry.sources))
            assert f'fs_failing_workers{{source="{source}"}} 1.0' in api.get("/metrics").text
            assert stats(client, registry).get("events", 0) == 0
            assert not list(small_disk.rglob(".tmp-*")), "a temporary file per retry"

            filler.unlink()  # the operator frees space
            wait_for(
                lambda: stats(client, registry).get("events", 0) == len(events),
                90,
                "every event once space is back",
                worker,
            )
            wait_for(lambda: worker_health()[0] == 200, 30, "the worker ok again", worker)
            wait_for(
                lambda: api.get("/health").json()["dependencies"]["worker"]["status"] == "ok",
                30,
                "the API reports the worker ok again",
            )
    finally:
        worker.stop()
    assert len(offline_events(registry, small_disk / "offline")) == len(events)
