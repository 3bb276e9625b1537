"""An event whose join key for one view is null or empty counts in the other views of
its source, is skipped (and counted) by that view, and reaches the dead-letter topic
only when no view can take it: worker, /status, metrics, `feature-service status`,
/push, training sets and the parity check all agree (issue 21, item 3).

A view of the (customer, merchant) pair (`join_keys: [customer_id, merchant_id]`, issue
25 item 3) takes an event only with both keys: a real worker keys it by the tuple (ids
containing `","` included, which must not collide), a lookup passes both columns (a
row with either one null or empty is NOT_FOUND) and a training set joined on both
columns gives the lookup's values."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import redis
from fastapi.testclient import TestClient

from feature_service.aggregation.reference import Event
from feature_service.aggregation.values import plain_value
from feature_service.api.app import create_app
from feature_service.core.config import Settings
from feature_service.definitions import FeatureView, Registry, load_definitions
from feature_service.embedded import EmbeddedStack
from feature_service.embedded.processes import free_port
from feature_service.offline.event_log import EventLog
from feature_service.offline.historical import get_historical_features
from feature_service.online.redis_client import connect
from feature_service.parity import check_parity, same_value
from feature_service.sdk import FeatureStore
from tests.conditions import wait_for
from tests.integration.streaming import (
    assert_online_equals_brute_force,
    offline_events,
    produce,
    start_worker,
    stats,
)
from tests.integration.test_observability import metric
from tests.integration.test_stream_worker import dlq_messages

pytestmark = pytest.mark.integration

DEFINITIONS = """
entities:
  - {{name: customer, join_key: customer_id}}
  - {{name: merchant, join_key: merchant_id}}
  - {{name: pair, join_keys: [customer_id, merchant_id]}}
sources:
  - name: {source}
    topic: {topic}
    timestamp_field: ts
    key: customer_id
    partitions: 2
    schema: {{customer_id: string, merchant_id: string, amount: float}}
feature_views:
  - name: cust_{tag}
    source: {source}
    entity: customer
    features:
      - {{name: n_1d, aggregation: count, window: 1d}}
      - {{name: total, column: amount, aggregation: sum}}
      - {{name: last_amount, column: amount, aggregation: last}}
  - name: merch_{tag}
    source: {source}
    entity: merchant
    features:
      - {{name: n_1d, aggregation: count, window: 1d}}
      - {{name: total, column: amount, aggregation: sum}}
      - {{column: customer_id, aggregation: count_distinct, window: 1d}}
  - name: pair_{tag}
    source: {source}
    entity: pair
    features:
      - {{name: n_1d, aggregation: count, window: 1d}}
      - {{name: total, column: amount, aggregation: sum}}
      - {{name: last_amount, column: amount, aggregation: last}}
"""

# Pairs a naive `customer + "," + merchant` id would merge: ('a","b', 'c') and ('a', 'b","c').
TRICKY = [('a","b', "c"), ("a", 'b","c'), ("a,b", "c"), ("a", "b,c")]

T0 = 1_790_000_000.0


def events() -> list[dict[str, Any]]:
    """600 events: every 5th without a merchant (null or ""), every 7th without a
    customer, and two without either key."""
    rng = np.random.default_rng(21)
    out: list[dict[str, Any]] = []
    for i in range(600):
        customer: str | None = f"c{int(rng.integers(0, 30))}"
        merchant: str | None = f"m{int(rng.integers(0, 8))}"
        if i % 5 == 4:
            merchant = None if i % 10 == 4 else ""
        elif i % 7 == 6:
            customer = None
        out.append(
            {
                "customer_id": customer,
                "merchant_id": merchant,
                "amount": round(float(rng.lognormal(3, 1)), 2),
                "ts": T0 + i * 60.0,
            }
        )
    out[300] = {**out[300], "customer_id": None, "merchant_id": None}
    out[301] = {**out[301], "customer_id": "", "merchant_id": None}
    for i, (customer, merchant) in enumerate(TRICKY):
        out[590 + i] = {**out[590 + i], "customer_id": customer, "merchant_id": merchant}
    return out


def expected_of(view: FeatureView, log: pd.DataFrame) -> dict[str, list[Event]]:
    """The log's events that carry the view's keys, per entity id (nothing is late
    here); a pair's id written out by hand, as JSON, not by `keys.EntityKey`."""
    keys = view.entity.join_keys
    out: dict[str, list[Event]] = defaultdict(list)
    for row in log.to_dict(orient="records"):
        if any(row[k] is None or row[k] == "" for k in keys):
            continue
        pair = json.dumps([row[k] for k in keys], separators=(",", ":"))
        entity = row[keys[0]] if len(keys) == 1 else pair
        values = {c: row[c] for c in ("customer_id", "merchant_id", "amount")}
        seq = int(row["_offset"]) * 4096 + int(row["_partition"])
        out[entity].append(Event(float(row["event_ts"]), seq, values, [True] * len(view.features)))
    return out


def status_cli(stack: EmbeddedStack, definitions: Path, *flags: str) -> str:
    """`feature-service status` with its output piped (not a terminal)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FS_")}
    env.update(FS_REDIS_URL=stack.redis.url, FS_BROKER_URL=stack.broker.bootstrap)
    env.pop("COLUMNS", None)
    done = subprocess.run(
        [sys.executable, "-m", "feature_service.cli.main", "status", "-d", str(definitions),
         *flags],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_null_key_skips_only_its_view_and_no_view_dead_letters(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    definitions = tmp_path / "defs"
    definitions.mkdir()
    (definitions / "defs.yaml").write_text(
        DEFINITIONS.format(source=f"tx_{tag}", topic=f"tx-{tag}", tag=tag)
    )
    registry: Registry = load_definitions(definitions)
    source = next(iter(registry.sources.values()))
    customers, merchants, pairs = (
        registry.feature_views[f"cust_{tag}"],
        registry.feature_views[f"merch_{tag}"],
        registry.feature_views[f"pair_{tag}"],
    )
    sent = events()
    no_view = 2
    no_merchant = sum(1 for e in sent if e["customer_id"] and not e["merchant_id"])
    no_customer = sum(1 for e in sent if e["merchant_id"] and not e["customer_id"])
    assert no_merchant == 120 and no_customer == 67
    offline = tmp_path / "offline"
    client = redis.Redis.from_url(stack.redis.url)
    settings = Settings(redis_url=stack.redis.url, broker_url=stack.broker.bootstrap)
    metrics_port = free_port()
    produce(stack, registry, sent)
    worker = start_worker(
        stack, definitions, offline, extra_env={"FS_WORKER_METRICS_PORT": str(metrics_port)}
    )
    try:
        wait_for(
            lambda: sum(stats(client, registry).get(k, 0) for k in ("events", "dlq")) >= len(sent),
            120,
            "every event counted or dead-lettered",
            worker,
        )
        counters = stats(client, registry)
        assert counters["dlq"] == no_view
        assert counters["events"] == len(sent) - no_view
        assert counters[f"skipped:{merchants.name}"] == no_merchant
        assert counters[f"skipped:{customers.name}"] == no_customer
        assert counters[f"skipped:{pairs.name}"] == no_customer + no_merchant
        reasons = [m["reason"] for m in dlq_messages(stack, source.dlq_topic, no_view)]
        assert sorted(reasons) == [
            "no feature view can take the event: key field 'customer_id' is empty, "
            "key field 'merchant_id' is null",
            "no feature view can take the event: key field 'customer_id' is null, "
            "key field 'merchant_id' is null",
        ]

        # Online state of each view holds exactly the events that carry its key.
        log = offline_events(registry, offline)
        assert len(log) == len(sent) - no_view
        newest = float(log["event_ts"].max())
        for view in (customers, merchants, pairs):
            expected = expected_of(view, log)
            checked = assert_online_equals_brute_force(
                client, view, expected, [newest, newest - 3600.5]
            )
            assert checked == len(expected) * 2 * len(view.features)

        with TestClient(create_app(settings, registry)) as api:
            (got,) = api.get("/status").json()["sources"]
            assert got["skipped"] == {
                customers.name: no_customer,
                merchants.name: no_merchant,
                pairs.name: no_customer + no_merchant,
            }
            assert got["dlq"] == no_view and got["events"] == len(sent) - no_view
            assert got["last_commit_ts"] is not None
            text = api.get("/metrics").text
            labels = {"source": source.name, "view": merchants.name}
            assert metric(text, "fs_skipped_events_total", **labels) == no_merchant
            scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
            assert metric(scraped, "fs_worker_skipped_events_total", **labels) == no_merchant
            assert metric(scraped, "fs_worker_dlq_events_total", source=source.name) == no_view

            # Lookups of the pair: both key columns, zipped; a row with either one null or
            # empty is NOT_FOUND (the values of no events), whatever the other one names.
            pair_ids = sorted(expected_of(pairs, log))
            assert {json.dumps(list(t), separators=(",", ":")) for t in TRICKY} <= set(pair_ids)
            pair_rows = [json.loads(i) for i in pair_ids] + [["c1", None], [None, "m1"], ["", "m1"]]
            pair_features = [f"{pairs.name}:{f.name}" for f in pairs.features]
            body = {
                "features": pair_features,
                "entities": {
                    "customer_id": [c for c, _ in pair_rows],
                    "merchant_id": [m for _, m in pair_rows],
                },
                "as_of": newest,
            }
            answer = api.post("/get-online-features", json=body).json()
            names = answer["metadata"]["feature_names"]
            assert names == ["customer_id", "merchant_id", *(f.name for f in pairs.features)]
            looked_up = dict(zip(names, answer["results"], strict=True))
            n_pairs = len(pair_ids)
            assert looked_up["n_1d"]["statuses"] == ["PRESENT"] * n_pairs + ["NOT_FOUND"] * 3
            assert looked_up["n_1d"]["values"][n_pairs:] == [0, 0, 0]
            assert looked_up["total"]["values"][n_pairs:] == [None, None, None]
            assert looked_up["merchant_id"]["statuses"][-3:] == [
                "NULL_VALUE", "PRESENT", "PRESENT"
            ]  # fmt: skip
            one_column = {**body, "entities": {"customer_id": ["c1"]}}
            refused = api.post("/get-online-features", json=one_column)
            assert refused.status_code == 422
            assert refused.json()["detail"] == (
                f"feature view {pairs.name!r} needs entity key 'merchant_id'"
            )
            # the SDK reads the same, from entity rows
            with FeatureStore(settings, registry) as store:
                sdk = store.get_online_features(
                    pair_features,
                    [{"customer_id": c, "merchant_id": m} for c, m in pair_rows],
                    as_of=newest,
                )
            assert sdk.to_dict() == {k: v["values"] for k, v in looked_up.items()}
            assert sdk.statuses() == {k: v["statuses"] for k, v in looked_up.items()}

            printed = json.loads(status_cli(stack, definitions, "--json"))
            assert printed["sources"][0]["skipped"] == got["skipped"]
            table = status_cli(stack, definitions)
            assert "…" not in table and "skipped" in table and "newest event" in table

            # /push takes a row without a merchant; a row without any key is a 422.
            row = {"customer_id": ["c1"], "merchant_id": [None], "amount": [5.0],
                   "ts": [T0 + 600 * 60.0]}  # fmt: skip
            pushed = api.post("/push", json={"push_source_name": source.name, "df": row})
            assert pushed.status_code == 200, pushed.text
            nothing = {**row, "customer_id": [None]}
            refused = api.post("/push", json={"push_source_name": source.name, "df": nothing})
            assert refused.status_code == 422
            assert "no feature view can take the event" in refused.json()["detail"]
        wait_for(
            lambda: stats(client, registry).get(f"skipped:{merchants.name}", 0) > no_merchant,
            60,
            "the pushed row counted for customers, skipped for merchants",
            worker,
        )
        assert stats(client, registry)["dlq"] == no_view

        # `produce` counts what the worker will dead-letter by the same rule.
        lines = [
            {"customer_id": "c2", "merchant_id": None, "amount": 1.0, "ts": T0 + 601 * 60.0},
            {"customer_id": None, "merchant_id": "", "amount": 1.0, "ts": T0 + 602 * 60.0},
        ]
        jsonl = tmp_path / "more.jsonl"
        jsonl.write_text("".join(json.dumps(line) + "\n" for line in lines))
        env = {k: v for k, v in os.environ.items() if not k.startswith("FS_")}
        env.update(FS_BROKER_URL=stack.broker.bootstrap, FS_REDIS_URL=stack.redis.url)
        produced = subprocess.run(
            [sys.executable, "-m", "feature_service.cli.main", "produce", source.name,
             str(jsonl), "-d", str(definitions)],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert produced.returncode == 0, produced.stderr
        assert "sent 2 events" in produced.stdout and "1 of them" in produced.stdout
        wait_for(
            lambda: stats(client, registry)["dlq"] == no_view + 1,
            60,
            "the keyless produced event dead-lettered",
            worker,
        )
    finally:
        worker.stop()

    # Training sets: the events without a merchant are in no merchant row, a null
    # entity row matches nothing, and each row equals the online value.
    log = offline_events(registry, offline)
    expected = expected_of(merchants, log)
    entity_df = pd.DataFrame(
        {
            "merchant_id": [*sorted(expected), None, ""],
            "event_timestamp": [newest] * (len(expected) + 2),
        }
    )
    features = [f"{merchants.name}:n_1d", f"{merchants.name}:total"]
    got_set = get_historical_features(registry, EventLog(str(offline)), entity_df, features)
    window = newest - 86400
    want_n = [sum(1 for e in expected[m] if window <= e.ts <= newest) for m in sorted(expected)]
    assert got_set["n_1d"].tolist() == [*want_n, 0, 0]
    assert sum(want_n) == len(sent) - no_view - no_merchant
    assert got_set["total"].iloc[-2:].isna().all()

    # A training set of the pairs, joined on both columns, gives what the lookup served.
    pair_df = pd.DataFrame(
        {
            "customer_id": [c for c, _ in pair_rows],
            "merchant_id": [m for _, m in pair_rows],
            "event_timestamp": [newest] * len(pair_rows),
        }
    )
    pair_set = get_historical_features(registry, EventLog(str(offline)), pair_df, pair_features)
    for feature in pairs.features:
        offline_values = [plain_value(v) for v in pair_set[feature.name].tolist()]
        online_values = looked_up[feature.name]["values"]
        assert len(offline_values) == len(online_values) == len(pair_rows)
        for on, off in zip(online_values, offline_values, strict=True):
            assert same_value(feature.aggregation, on, off), (feature.name, on, off)

    async def parity() -> Any:
        redis_client = connect(stack.redis.url)
        try:
            return await check_parity(registry, redis_client, EventLog(str(offline)), 200, seed=3)
        finally:
            await redis_client.aclose()

    report = asyncio.run(parity())
    assert report.ok, report.mismatches[:5]
    assert report.checked_points > 0
    client.close()
