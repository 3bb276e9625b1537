"""Several worker processes in one consumer group share a topic's partitions exactly once.

The view here is keyed by the topic's key (customer_id); views keyed otherwise, whose
entities every worker writes, are in test_foreign_key_views.py.
"""

from __future__ import annotations

import json
import random
import urllib.request
from pathlib import Path

import pytest
import redis

from feature_service.embedded import EmbeddedStack, ManagedProcess
from feature_service.embedded.processes import free_port
from tests.conditions import wait_for
from tests.integration.streaming import (
    assert_online_equals_brute_force,
    expected_events,
    make_events,
    offline_events,
    produce,
    start_worker,
    stats,
    write_definitions,
)

pytestmark = pytest.mark.integration


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def health(port: int) -> dict:
    code, body = get(port, "/health")
    return json.loads(body) if code == 200 else {}


def test_three_workers_with_a_kill_and_restart_count_every_event_once(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    n = 45_000
    definitions, registry = write_definitions(tmp_path, partitions=6)
    view = next(iter(registry.feature_views.values()))
    events = make_events(n, seed=21)
    chunks = [events[:15_000], events[15_000:30_000], events[30_000:]]
    offline = tmp_path / "offline"
    client = redis.Redis.from_url(stack.redis.url)
    ports = {name: free_port() for name in ("a", "b", "c")}
    workers: dict[str, ManagedProcess] = {}

    def start(name: str) -> None:
        env = {"FS_HEALTH_PORT": str(ports[name])}
        workers[name] = start_worker(stack, definitions, offline, f"worker-{name}", env)

    def processed() -> int:
        return stats(client, registry).get("events", 0)

    def owners() -> dict[str, int]:
        return {name: health(ports[name]).get("partitions", -1) for name in workers}

    try:
        produce(stack, registry, chunks[0])
        start("a")
        start("b")  # two workers, one group: 3 partitions each
        wait_for(lambda: sorted(owners().values()) == [3, 3], 120, "a and b share 6 partitions")
        wait_for(lambda: processed() >= 5_000, 120, "progress with 2 workers", workers["a"])
        start("c")  # rebalance to three workers, mid-stream
        wait_for(lambda: sorted(owners().values()) == [2, 2, 2], 120, "three workers, 2 each")
        produce(stack, registry, chunks[1])
        wait_for(lambda: processed() >= 20_000, 120, "progress with 3 workers", workers["c"])
        workers["b"].kill()  # SIGKILL: its pending batches are lost, its partitions move
        del workers["b"]
        produce(stack, registry, chunks[2])
        wait_for(lambda: processed() >= 30_000, 120, "progress after the kill", workers["a"])
        start("b")  # back to three
        wait_for(lambda: processed() >= n, 180, "all events", workers["a"])
        code, metrics = get(ports["a"], "/metrics")
        assert code == 200 and b"fs_worker_events_total" in metrics
        shares = {name: health(ports[name]).get("events", 0) for name in workers}
        assert sum(1 for share in shares.values() if share > 0) >= 2, shares
    finally:
        for worker in workers.values():
            worker.stop()

    assert processed() == n, "an event was counted twice"
    log = offline_events(registry, offline)
    assert len(log) == n
    assert not log.duplicated(["_partition", "_offset"]).any()
    assert sorted(log["_partition"].unique()) == list(range(6))
    expected = expected_events(view, log)
    newest = float(log["event_ts"].max())
    sample = dict(random.Random(8).sample(sorted(expected.items()), 40))
    assert assert_online_equals_brute_force(client, view, sample, [newest, newest - 5400.5]) > 0
