"""A view keyed by something other than the topic's key (categories on a topic keyed by
customer), written by two worker processes at once: every partition feeds every
category, so both workers write the same entities; values must still be exact."""

from __future__ import annotations

import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import redis

from feature_service.aggregation.reference import Event
from feature_service.definitions import load_definitions
from feature_service.embedded import EmbeddedStack, ManagedProcess
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

DEFINITIONS = """
entities:
  - {{name: customer, join_key: customer_id}}
  - {{name: category, join_key: category}}
sources:
  - name: {source}
    topic: {topic}
    timestamp_field: ts
    key: customer_id
    partitions: 6
    schema: {{customer_id: string, amount: float, category: string, online: bool}}
feature_views:
  - name: {view}
    source: {source}
    entity: category
    features:
      - {{name: n_1h, aggregation: count, window: 1h}}
      - {{column: amount, aggregations: [sum, mean, max, std], windows: [1h, 1d]}}
      - {{column: customer_id, aggregation: count_distinct, window: 1d}}
      - {{name: last_amount, column: amount, aggregation: last}}
      - {{name: online_1d, aggregation: count, window: 1d, where: "online"}}
"""


def test_two_workers_write_shared_entities_exactly(stack: EmbeddedStack, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    path = tmp_path / "defs" / "defs.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(DEFINITIONS.format(source=f"tx_{tag}", topic=f"tx-{tag}", view=f"cat_{tag}"))
    registry = load_definitions(path.parent)
    view = next(iter(registry.feature_views.values()))
    n = 20_000
    events = make_events(n, seed=5)
    offline = tmp_path / "offline"
    client = redis.Redis.from_url(stack.redis.url)
    workers: list[ManagedProcess] = []
    try:
        produce(stack, registry, events[: n // 2])
        workers.append(start_worker(stack, path.parent, offline, "worker-a"))
        workers.append(start_worker(stack, path.parent, offline, "worker-b"))
        produce(stack, registry, events[n // 2 :])
        wait_for(lambda: stats(client, registry).get("events", 0) >= n, 240, "events", workers[0])
    finally:
        for worker in workers:
            worker.stop()
    counters = stats(client, registry)
    assert counters["events"] == n
    log = offline_events(registry, offline)
    assert len(log) == n and not log.duplicated(["_partition", "_offset"]).any()
    assert log["_partition"].nunique() == 6
    late = log["event_ts"].to_numpy() < log["_watermark"].to_numpy() - view.allowed_lateness_s
    expected: dict[str, list[Event]] = defaultdict(list)
    for row in log[~late].to_dict(orient="records"):
        values = {c: row[c] for c in ("amount", "category", "online", "customer_id")}
        if isinstance(values["amount"], float) and np.isnan(values["amount"]):
            values["amount"] = None
        passes = [True if f.where is None else f.where.evaluate_row(values) for f in view.features]
        seq = int(row["_offset"]) * 4096 + int(row["_partition"])
        expected[row["category"]].append(Event(float(row["event_ts"]), seq, values, passes))
    newest = float(log["event_ts"].max())
    checked = assert_online_equals_brute_force(
        client, view, expected, [newest, newest - 1800.5, newest - 7200]
    )
    assert checked == len(expected) * 3 * len(view.features)
