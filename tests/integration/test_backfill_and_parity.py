"""A view added after its events arrived: backfill next to the running worker makes its
online state exact (no gap, no double count), and the parity check says so."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis

from feature_service.definitions import Registry, load_definitions
from feature_service.embedded import EmbeddedStack
from feature_service.offline.event_log import EventLog
from feature_service.online.redis_client import connect
from feature_service.online.redis_layout import view_start_key
from feature_service.parity import ParityReport, check_parity
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

NEW_VIEW = """
  - name: {view}_new
    source: {source}
    entity: customer
    features:
      - {{name: n_1h, aggregation: count, window: 1h}}
      - {{column: amount, aggregations: [sum, std, max], windows: [1h, 1d]}}
      - {{name: cats_1d, column: category, aggregation: count_distinct, window: 1d}}
      - {{name: total, column: amount, aggregation: sum}}
      - {{name: first_cat, column: category, aggregation: first}}
      - {{name: last_amount, column: amount, aggregation: last}}
      - {{name: since, aggregation: time_since_last}}
      - {{name: fuel_1d, aggregation: count, window: 1d, where: "category == 'fuel'"}}
      - {{name: last_2, column: amount, aggregation: last_k, k: 2}}
      - {{name: top_cats_1d, column: category, aggregation: frequent_k, k: 2, window: 1d}}
      - {{name: p50_1d, column: amount, aggregation: approx_percentile, percentile: 0.5,
          window: 1d}}
      - {{name: gap_1d, aggregation: mean_gap, window: 1d}}
"""


def with_new_view(definitions: Path, registry: Registry) -> Path:
    """The same definitions plus a second view of the same source."""
    view = next(iter(registry.feature_views))
    source = next(iter(registry.sources))
    text = (definitions / "defs.yaml").read_text()
    folder = definitions.parent / "defs_v2"
    folder.mkdir()
    (folder / "defs.yaml").write_text(text + NEW_VIEW.format(view=view, source=source))
    return folder


def parity(stack: EmbeddedStack, registry: Registry, offline: Path, view: str) -> ParityReport:
    async def run() -> ParityReport:
        client = connect(stack.redis.url)
        try:
            return await check_parity(registry, client, EventLog(str(offline)), 300, [view], 7)
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_backfill_beside_the_running_worker_makes_a_new_view_exact(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    definitions, old = write_definitions(tmp_path)
    events = make_events(9_000, seed=31, customers=60)
    offline = tmp_path / "offline"
    client = redis.Redis.from_url(stack.redis.url)

    def processed() -> int:
        return stats(client, old).get("events", 0)

    # 1. the old definitions see the first 4000 events
    worker = start_worker(stack, definitions, offline)
    try:
        produce(stack, old, events[:4000])
        wait_for(lambda: processed() >= 4000, 180, "first events", worker)
    finally:
        worker.stop()

    # 2. a worker with the new view takes over and sees 2000 more
    new_definitions = with_new_view(definitions, old)
    registry = load_definitions(new_definitions)
    new_view = next(v for v in registry.feature_views if v.endswith("_new"))
    worker = start_worker(stack, new_definitions, offline)
    try:
        produce(stack, registry, events[4000:6000])
        wait_for(lambda: processed() >= 6000, 180, "more events", worker)
        source = registry.feature_views[new_view].source
        starts = client.hgetall(view_start_key(new_view, source.name))
        assert starts, "the worker records where the stream took over the new view"

        before = parity(stack, registry, offline, new_view)
        assert before.mismatches, "without a backfill, the old events are missing online"

        # 3. backfill while the last 3000 events stream in
        producer = threading.Thread(target=produce, args=(stack, registry, events[6000:]))
        producer.start()
        env = {
            **os.environ,
            **stack.env(),
            "FS_DEFINITIONS": str(new_definitions),
            "FS_OFFLINE_URI": str(offline),
        }
        done = subprocess.run(
            [sys.executable, "-m", "feature_service.cli.main", "backfill", "--view", new_view],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        producer.join()
        assert done.returncode == 0, done.stderr
        assert f"backfilled {new_view}:" in done.stdout
        wait_for(lambda: processed() >= 9000, 180, "all events", worker)
    finally:
        worker.stop()
    assert processed() == 9000

    # online == the contract over every (non-late) event, old and new
    view = registry.feature_views[new_view]
    log = offline_events(registry, offline)
    assert len(log) == 9000
    expected = expected_events(view, log)
    newest = float(log["event_ts"].max())
    sample = dict(random.Random(4).sample(sorted(expected.items()), 30))
    times = [newest, newest - 1800.5, newest - 86400 + 60]
    assert assert_online_equals_brute_force(client, view, sample, times) > 0

    # and the parity command agrees, for both views
    for name in (new_view, next(iter(old.feature_views))):
        report = parity(stack, registry, offline, name)
        assert report.ok, [str(m) for m in report.mismatches[:5]]
        assert report.checked_points > 50 and report.still

    # running it again changes nothing
    again = subprocess.run(
        [sys.executable, "-m", "feature_service.cli.main", "backfill", "--view", new_view],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert again.returncode == 0 and "into 0 entities" in again.stdout, again.stdout
    assert parity(stack, registry, offline, new_view).ok

    cli = subprocess.run(
        [sys.executable, "-m", "feature_service.cli.main", "parity", "--sample", "50"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "0 mismatches" in cli.stdout
