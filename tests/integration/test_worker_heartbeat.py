"""Worker heartbeats in the real Redis: events/s over the window, live vs. stale, pruning."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from feature_service.embedded import EmbeddedStack
from feature_service.observability.pipeline import STALE_AFTER_S, read_pipeline_status
from feature_service.observability.worker_monitor import PRUNE_AFTER_S, RATE_WINDOW_S, WorkerMonitor
from feature_service.online.redis_client import connect
from feature_service.online.redis_layout import WORKERS_KEY
from tests.integration.streaming import write_definitions

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_rate_is_events_per_second_over_the_last_window() -> None:
    clock = Clock(1000.0)
    monitor = WorkerMonitor(["tx"], clock=clock)
    assert monitor.rates(clock.t) == {"tx": 0.0}
    monitor.flushed("tx", accepted=90, rejected=10, late={}, seconds=0.01)
    clock.t += 4
    assert monitor.rates(clock.t) == {"tx": pytest.approx(25.0)}  # 100 events in 4 s
    clock.t += RATE_WINDOW_S + 1  # idle for longer than the window: the rate falls to 0
    monitor.rates(clock.t)
    clock.t += 1
    assert monitor.rates(clock.t) == {"tx": 0.0}


def test_heartbeats_count_live_workers_and_prune_long_gone_ones(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    _, registry = write_definitions(tmp_path)
    source = next(iter(registry.sources))

    async def scenario() -> None:
        redis = connect(stack.redis.url)
        now = 2_000_000_000.0
        gone = {"seen": now - PRUNE_AFTER_S - 1, "sources": {source: {"events": 1, "rate": 9}}}
        stale = {"seen": now - STALE_AFTER_S - 1, "sources": {source: {"events": 1, "rate": 7}}}
        await redis.hset(WORKERS_KEY, mapping={"gone:1": orjson.dumps(gone)})
        await redis.hset(WORKERS_KEY, mapping={"stale:1": orjson.dumps(stale)})
        monitor = WorkerMonitor([source], clock=Clock(now))
        monitor.flushed(source, accepted=50, rejected=0, late={}, seconds=0.01)
        try:
            await monitor.beat(redis)
            beats = await redis.hgetall(WORKERS_KEY)
            assert monitor.id.encode() in beats and b"stale:1" in beats
            assert b"gone:1" not in beats  # pruned by the beat
            status = await read_pipeline_status(redis, registry, None, now=now + 1)
            got = status.source(source)
            assert got.workers == 1  # the stale one is not counted
            assert got.events_per_s == 0.0  # one sample: no rate yet
            assert [w.id for w in status.workers if source in w.sources] == [monitor.id]
            await monitor.leave(redis)
            status = await read_pipeline_status(redis, registry, None, now=now + 1)
            assert status.source(source).workers == 0
            assert status.source(source).events_per_s is None
        finally:
            await redis.hdel(WORKERS_KEY, "stale:1")
            await redis.aclose()

    asyncio.run(scenario())
