"""The worker turns events into exact online state and an exactly-once offline log."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer

from feature_service.embedded import EmbeddedStack
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


def dlq_messages(stack: EmbeddedStack, topic: str, expected: int) -> list[dict]:
    async def read() -> list[dict]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=stack.broker.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        got: list[dict] = []
        try:
            async with asyncio.timeout(30):
                while len(got) < expected:
                    batches = await consumer.getmany(timeout_ms=500)
                    got += [json.loads(m.value) for ms in batches.values() for m in ms]
        finally:
            await consumer.stop()
        return got

    return asyncio.run(read())


def test_20k_events_give_exact_online_state_and_exactly_once_offline_log(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    definitions, registry = write_definitions(tmp_path)
    view = next(iter(registry.feature_views.values()))
    source = view.source
    events = make_events(20_000, seed=1, bad_every=500)
    bad = sum(1 for i in range(20_000) if i % 500 == 499)
    offline = tmp_path / "offline"
    client = redis.Redis.from_url(stack.redis.url)
    worker = start_worker(stack, definitions, offline)
    try:
        produce(stack, registry, events)
        wait_for(
            lambda: sum(stats(client, registry).get(k, 0) for k in ("events", "dlq")) >= 20_000,
            timeout=240,
            what="all events processed",
            process=worker,
        )
    finally:
        worker.stop()
    counters = stats(client, registry)
    assert counters["events"] == 20_000 - bad
    assert counters["dlq"] == bad

    log = offline_events(registry, offline)
    assert len(log) == 20_000 - bad
    assert not log.duplicated(["_partition", "_offset"]).any()

    expected = expected_events(view, log)
    newest = float(log["event_ts"].max())
    times = [newest, newest - 1800.5, newest - 3 * 3600, newest + 2 * 86400]
    rng = random.Random(3)
    sample = dict(rng.sample(sorted(expected.items()), 60))
    assert assert_online_equals_brute_force(client, view, sample, times) > 0

    reasons = [m["reason"] for m in dlq_messages(stack, source.dlq_topic, bad)]
    assert len(reasons) == bad
    assert any(r.startswith("not valid JSON") for r in reasons)
    assert any(r == "missing field 'amount'" for r in reasons)
    assert any(r == "field 'amount' must be a float, got 'N/A'" for r in reasons)


def test_sigkill_at_random_moments_loses_and_doubles_nothing(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    n = 100_000
    definitions, registry = write_definitions(tmp_path)
    view = next(iter(registry.feature_views.values()))
    events = make_events(n, seed=2)
    offline = tmp_path / "offline"
    client = redis.Redis.from_url(stack.redis.url)
    produce(stack, registry, events)
    rng = random.Random(11)
    kill_points = sorted(rng.sample(range(2_000, n - 2_000), 5))

    def processed() -> int:
        return stats(client, registry).get("events", 0)

    for point in kill_points:
        worker = start_worker(stack, definitions, offline)
        wait_for(
            lambda p=point: processed() >= p, timeout=300, what=f"{point} events", process=worker
        )
        worker.kill()  # SIGKILL, mid-batch or between batches
    worker = start_worker(stack, definitions, offline)
    try:
        wait_for(lambda: processed() >= n, timeout=300, what="all events", process=worker)
    finally:
        worker.stop()
    assert processed() == n, "events were counted twice"

    log = offline_events(registry, offline)
    assert len(log) == n
    assert not log.duplicated(["_partition", "_offset"]).any()
    expected = expected_events(view, log)
    newest = float(log["event_ts"].max())
    sample = dict(random.Random(5).sample(sorted(expected.items()), 40))
    assert assert_online_equals_brute_force(client, view, sample, [newest, newest - 7200.25]) > 0
