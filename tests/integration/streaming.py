"""Helpers for stream tests: unique definitions, events, a worker process, expectations."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import redis

from feature_service.aggregation.reference import Event, brute_force, matches
from feature_service.aggregation.state import OutsideRetentionError
from feature_service.definitions import FeatureView, Registry, load_definitions
from feature_service.embedded import EmbeddedStack, ManagedProcess
from feature_service.embedded.processes import free_port
from feature_service.offline.event_log import EventLog
from feature_service.online.redis_layout import entity_key, stats_key, view_layout
from feature_service.stream.event_files import EventMessage
from feature_service.stream.producer import produce_messages
from feature_service.stream.topics import ensure_topics
from tests.entity_state import EntityState

DEFINITIONS = """
entities:
  - {{name: customer, join_key: customer_id}}
sources:
  - name: {source}
    topic: {topic}
    timestamp_field: ts
    partitions: {partitions}
    schema: {{customer_id: string, amount: float, category: string, online: bool}}
feature_views:
  - name: {view}
    source: {source}
    entity: customer
    ttl: 30d
    features:
      - {{name: n_1h, aggregation: count, window: 1h}}
      - {{column: amount, aggregations: [sum, mean, min, max, std, var], windows: [1h, 1d]}}
      - {{column: category, aggregation: count_distinct, window: 1d}}
      - {{name: first_amount, column: amount, aggregation: first}}
      - {{name: last_amount, column: amount, aggregation: last}}
      - {{name: last_amount_1h, column: amount, aggregation: last, window: 1h}}
      - {{name: since_last, aggregation: time_since_last}}
      - {{name: grocery_1d, aggregation: count, window: 1d, where: "category == 'grocery'"}}
      - {{name: online_sum_1h, column: amount, aggregation: sum, window: 1h, where: "online"}}
      - {{name: last_3_amounts_1d, column: amount, aggregation: last_k, k: 3, window: 1d}}
      - {{name: first_2_categories, column: category, aggregation: first_k, k: 2}}
      - {{name: top_categories_1d, column: category, aggregation: frequent_k, k: 2, window: 1d}}
      - {{name: category_histogram, column: category, aggregation: histogram, k: 3}}
      - {{name: amount_p90_1d, column: amount, aggregation: approx_percentile, percentile: 0.9,
          window: 1d}}
      - {{name: amount_quartiles, column: amount, aggregation: approx_percentile,
          percentiles: [0.25, 0.75]}}
      - {{name: mean_gap_1d, aggregation: mean_gap, window: 1d}}
      - {{name: std_gap_1h, aggregation: std_gap, window: 1h}}
      - {{name: categories_approx, column: category, aggregation: approx_count_distinct}}
      - {{name: amount_decayed_1d, column: amount, aggregation: decayed_sum, half_life: 1h,
          window: 1d}}
      - {{name: decayed_count, aggregation: decayed_count, half_life: 6h}}
      - {{name: top_amounts_1d, column: amount, aggregation: top_k, k: 2, window: 1d}}
      - {{name: recent_categories, column: category, aggregation: last_distinct_k, k: 2}}
      - {{name: amount_kurtosis_1d, column: amount, aggregation: kurtosis, window: 1d}}
"""

CATEGORIES = ["grocery", "fuel", "travel", "online", "restaurant"]


def write_definitions(tmp_path: Path, partitions: int = 3) -> tuple[Path, Registry]:
    """Definitions with names unique to this test, so tests can share one stack."""
    tag = uuid.uuid4().hex[:8]
    path = tmp_path / "defs" / "defs.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = DEFINITIONS.format(
        source=f"tx_{tag}", topic=f"tx-{tag}", view=f"cust_{tag}", partitions=partitions
    )
    path.write_text(text)
    return path.parent, load_definitions(path.parent)


def make_events(n: int, seed: int, customers: int = 300, bad_every: int = 0) -> list[bytes | dict]:
    """Events over ~3 days, mostly in time order with some disorder; some malformed."""
    rng = np.random.default_rng(seed)
    start = 1_790_000_000.0
    ts = start + np.sort(rng.uniform(0, 3 * 86400, n))
    ts = ts + rng.normal(0, 120, n) * (rng.random(n) < 0.05)  # 5% out of order
    ts = np.round(ts, 3)
    weights = 1.0 / np.arange(1, customers + 1)
    cust = rng.choice(customers, n, p=weights / weights.sum())
    amounts = np.round(rng.lognormal(3, 1.2, n), 2)
    events: list[bytes | dict] = []
    for i in range(n):
        if bad_every and i % bad_every == bad_every - 1:
            kind = i // bad_every % 3
            events.append(
                [
                    b"{not json",
                    {"customer_id": f"c{cust[i]}", "ts": float(ts[i])},
                    {
                        "customer_id": f"c{cust[i]}",
                        "amount": "N/A",
                        "category": "fuel",
                        "online": False,
                        "ts": float(ts[i]),
                    },
                ][kind]
            )
            continue
        events.append(
            {
                "customer_id": f"c{cust[i]}",
                "amount": None if rng.random() < 0.02 else float(amounts[i]),
                "category": CATEGORIES[int(rng.integers(0, len(CATEGORIES)))],
                "online": bool(rng.random() < 0.3),
                "ts": float(ts[i]),
            }
        )
    return events


def messages(events: list[bytes | dict]) -> list[EventMessage]:
    out = []
    for e in events:
        if isinstance(e, bytes):
            out.append(EventMessage(None, e))
        else:
            key = e.get("customer_id")
            out.append(EventMessage(None if key is None else key.encode(), json.dumps(e).encode()))
    return out


def produce(stack: EmbeddedStack, registry: Registry, events: list[bytes | dict]) -> None:
    source = next(iter(registry.sources.values()))
    asyncio.run(ensure_topics(stack.broker.bootstrap, registry))
    asyncio.run(produce_messages(stack.broker.bootstrap, source, messages(events)))


def start_worker(
    stack: EmbeddedStack,
    definitions: Path,
    offline: Path,
    name: str = "worker",
    extra_env: dict[str, str] | None = None,
    log_dir: Path | None = None,
) -> ManagedProcess:
    """A real `feature-service worker` process (several share one consumer group); its
    log goes beside `offline` unless `log_dir` is given."""
    env = stack.env()
    env.update(FS_DEFINITIONS=str(definitions), FS_OFFLINE_URI=str(offline))
    # One consumer group per test: a group left rebalancing by another test's killed
    # workers must not hold this one up (the embedded broker is shared by the session).
    env["FS_CONSUMER_GROUP"] = f"fs-test-{uuid.uuid5(uuid.NAMESPACE_URL, str(definitions))}"
    env.update(extra_env or {})
    env.pop("FS_LOG_LEVEL", None)
    return ManagedProcess(
        name,
        [sys.executable, "-m", "feature_service.cli.main", "worker"],
        log_path=(log_dir or offline.parent) / f"{name}-{os.getpid()}.log",
        env=env,
    ).start()


def stats(client: redis.Redis, registry: Registry) -> dict[str, int]:
    source = next(iter(registry.sources))
    raw = client.hgetall(stats_key(source))
    counters = {k.decode(): v for k, v in raw.items()}
    return {k: int(v) for k, v in counters.items() if not k.startswith(("newest_", "last_"))}


def offline_events(registry: Registry, offline: Path) -> pd.DataFrame:
    source = next(iter(registry.sources.values()))
    return EventLog(str(offline)).read(source)


def expected_events(view: FeatureView, log: pd.DataFrame) -> dict[str, list[Event]]:
    """Per entity, the events online state must hold: the offline log minus late ones.

    The log's watermarks are checked independently: per partition, in offset order,
    each is the newest event time before it.
    """
    for _, part in log.sort_values("_offset").groupby("_partition"):
        ts = part["event_ts"].to_numpy()
        running = np.maximum.accumulate(np.concatenate(([-np.inf], ts)))[:-1]
        assert np.array_equal(part["_watermark"].to_numpy(), running), "watermarks are wrong"
    late = log["event_ts"].to_numpy() < log["_watermark"].to_numpy() - view.allowed_lateness_s
    kept = log[~late]
    by_entity: dict[str, list[Event]] = defaultdict(list)
    for row in kept.to_dict(orient="records"):
        values = {c: row[c] for c in ("amount", "category", "online")}
        values = {
            k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in values.items()
        }
        passes = [True if f.where is None else f.where.evaluate_row(values) for f in view.features]
        seq = int(row["_offset"]) * 4096 + int(row["_partition"])
        by_entity[row["customer_id"]].append(Event(float(row["event_ts"]), seq, values, passes))
    return by_entity


def online_state(client: redis.Redis, view: FeatureView, entity: str) -> EntityState:
    raw = client.get(entity_key(view.name, entity))
    return EntityState.from_bytes(view_layout(view), raw)


def assert_online_equals_brute_force(
    client: redis.Redis, view: FeatureView, expected: dict[str, list[Event]], times: list[float]
) -> int:
    """Each entity's online values at each of `times` equal the brute force's; a time
    before a busy entity's compaction horizon is refused instead, naming the horizon
    (DESIGN.md "Bounded state"), which counts as checked for every feature."""
    checked = 0
    for entity, events in expected.items():
        state = online_state(client, view, entity)
        meta = state.meta
        horizon = None if meta is None else meta.horizon
        for t in times:
            if horizon is not None and t < horizon:
                try:
                    state.evaluate(t)
                except OutsideRetentionError as refused:
                    assert refused.horizon == horizon and str(horizon) in str(refused)
                    checked += len(view.features)
                    continue
                raise AssertionError(f"{entity} at {t} before its horizon {horizon}: answered")
            got = state.evaluate(t)
            for i, feature in enumerate(view.features):
                want = brute_force(events, t, feature, i)
                values = [e.values.get(feature.column) for e in events] if feature.column else []
                assert matches(feature, got[feature.name], want, values), (
                    f"{entity} {feature.name} at {t}: online {got[feature.name]!r} != {want!r}"
                )
                checked += 1
    return checked


def start_api(
    stack: EmbeddedStack, definitions: Path, log_dir: Path, name: str, **env: str
) -> tuple[ManagedProcess, str]:
    """A `feature-service serve` process (one: `--workers 1`) on `definitions` beside
    `stack` (extra `env` settings), and its address; the caller waits for it to answer and
    stops it."""
    port = free_port()
    environment = stack.env()
    environment.pop("FS_LOG_LEVEL", None)
    environment.update(env)
    api = ManagedProcess(
        name,
        [sys.executable, "-m", "feature_service.cli.main", "serve", "--port", str(port),
         "--workers", "1", "--definitions", str(definitions)],
        log_path=log_dir / "api.log",
        env=environment,
    ).start()  # fmt: skip
    return api, f"http://127.0.0.1:{port}"
