"""Apache Kafka keeps its data: a broker restart mid-stream, and `up --broker kafka` restarted.

- The broker stops under a running worker and starts again on the same port: the
  worker waits, resumes, and every event is counted once online and logged once offline.
- `up --broker kafka` stopped and started again in the same folder keeps topics,
  offsets, online state and the offline log, all consistent; events sent afterwards add
  up exactly.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
import redis

from feature_service.definitions import load_definitions
from feature_service.embedded import EmbeddedKafka, EmbeddedStack
from feature_service.offline.event_log import EventLog
from feature_service.online.redis_layout import offset_key, stats_key
from feature_service.stream.producer import produce_messages
from feature_service.stream.topics import ensure_topics
from tests.conditions import wait_for
from tests.integration.running_up import ROOT, RunningUp, clean_env, run_cli
from tests.integration.streaming import (
    assert_online_equals_brute_force,
    expected_events,
    make_events,
    messages,
    offline_events,
    start_worker,
    stats,
    write_definitions,
)

pytestmark = [pytest.mark.integration, pytest.mark.kafka_only]


def test_a_broker_restart_mid_stream_loses_and_doubles_nothing(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    broker = EmbeddedKafka(tmp_path / "kafka", tmp_path / "logs").start()
    try:
        n = 30_000
        definitions, registry = write_definitions(tmp_path, partitions=3)
        view = next(iter(registry.feature_views.values()))
        source = next(iter(registry.sources.values()))
        events = make_events(n, seed=31)
        asyncio.run(ensure_topics(broker.bootstrap, registry))
        asyncio.run(produce_messages(broker.bootstrap, source, messages(events[:15_000])))
        client = redis.Redis.from_url(stack.redis.url)
        offline = tmp_path / "offline"
        env = {"FS_BROKER_URL": broker.bootstrap, "FS_MAX_POLL_RECORDS": "2000"}
        worker = start_worker(stack, definitions, offline, extra_env=env)
        try:
            wait_for(
                lambda: stats(client, registry).get("events", 0) >= 4_000,
                120,
                "progress before the broker stops",
                worker,
            )
            broker.stop()  # mid-stream: the worker's fetches and commits fail meanwhile
            assert broker.process is not None and not broker.process.alive()
            broker.start()  # same ports, same data folder
            assert broker.keeps_topics
            asyncio.run(produce_messages(broker.bootstrap, source, messages(events[15_000:])))
            wait_for(
                lambda: stats(client, registry).get("events", 0) >= n,
                240,
                "every event after the broker restart",
                worker,
            )
            assert worker.alive(), "the worker waited for the broker instead of dying"
        finally:
            worker.stop()
        assert stats(client, registry)["events"] == n, "an event was counted twice"
        log = offline_events(registry, offline)
        assert len(log) == n and not log.duplicated(["_partition", "_offset"]).any()
        expected = expected_events(view, log)
        newest = float(log["event_ts"].max())
        sample = dict(random.Random(3).sample(sorted(expected.items()), 40))
        assert assert_online_equals_brute_force(client, view, sample, [newest, newest - 4000]) > 0
    finally:
        broker.stop()


def _numbers(up: RunningUp) -> tuple[int, list[bytes | None], int]:
    """(events counted online, the committed offsets, rows in the offline log)."""
    client = redis.Redis.from_url(up.stack()["redis_url"])
    try:
        counted = int(client.hget(stats_key("transactions"), "events") or 0)
        offsets = [client.get(offset_key("transactions", p)) for p in range(8)]
    finally:
        client.close()
    registry = load_definitions(ROOT / "definitions")
    frame = EventLog(up.stack()["offline_uri"]).read(registry.sources["transactions"])
    assert not frame.duplicated(["_partition", "_offset"]).any()
    return counted, offsets, len(frame)


def test_up_with_kafka_restarted_keeps_topics_offsets_and_both_stores(tmp_path: Path) -> None:
    sample = ROOT / "definitions" / "sample" / "transactions.jsonl"
    sent = sum(1 for line in sample.read_text().splitlines() if line.strip())

    def settled(up: RunningUp, events: int) -> bool:
        try:
            counted, _, logged = _numbers(up)
        except (OSError, ValueError, redis.RedisError):
            return False
        dlq = int(
            redis.Redis.from_url(up.stack()["redis_url"]).hget(stats_key("transactions"), "dlq")
            or 0
        )
        return counted + dlq >= events and logged == counted

    with RunningUp(tmp_path, "--broker", "kafka") as up:
        up.wait_output("API ready", timeout=240)
        wait_for(lambda: settled(up, sent), 180, "the sample counted and logged")
        before = _numbers(up)
    assert up.popen is not None and up.popen.returncode == 0

    with RunningUp(tmp_path, "--broker", "kafka") as up:
        up.wait_output("API ready", timeout=240)
        assert "kept    topics, offsets" in up.output and "replay  skipped" in up.output
        assert "clean start" not in up.output
        # nothing was replayed or re-read: the same counts, offsets and log
        assert _numbers(up) == before
        produced = run_cli("produce", "transactions", str(sample), cwd=tmp_path, env=clean_env())
        assert produced.returncode == 0, produced.stderr
        wait_for(lambda: settled(up, 2 * sent), 180, "the second copy counted and logged")
        counted, _, logged = _numbers(up)
    assert counted == logged == 2 * before[0]
