"""Which views take an event: each view whose join key the event carries (not null, not
empty); the dead-letter topic only gets an event no view can take. The stream, `/push`
and the training sets ask the same plan (`feature_service.plan`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from feature_service.definitions import Registry, load_definitions
from feature_service.offline.event_log import EventLog
from feature_service.offline.historical import get_historical_features
from feature_service.plan import key_present, source_plan, view_plan
from feature_service.requests import RequestError
from feature_service.stream.backfill import log_events
from feature_service.stream.push import push_messages
from feature_service.stream.source_processor import watermarks_before

DEFS = """
entities:
  - {name: customer, join_key: customer_id}
  - {name: merchant, join_key: merchant_id}
sources:
  - name: tx
    topic: tx
    timestamp_field: ts
    schema: {customer_id: string, merchant_id: string, amount: float}
feature_views:
  - name: by_customer
    source: tx
    entity: customer
    features:
      - {name: n, aggregation: count}
      - {name: total, column: amount, aggregation: sum}
  - name: by_merchant
    source: tx
    entity: merchant
    features:
      - {name: n, aggregation: count}
      - {name: total, column: amount, aggregation: sum}
"""


@pytest.fixture()
def registry(tmp_path: Path) -> Registry:
    path = tmp_path / "defs.yaml"
    path.write_text(DEFS)
    return load_definitions(path)


def event(customer: Any, merchant: Any, ts: float = 100.0, amount: float = 1.0) -> bytes:
    return json.dumps(
        {"customer_id": customer, "merchant_id": merchant, "amount": amount, "ts": ts}
    ).encode()


def test_a_key_is_present_unless_null_nan_or_empty() -> None:
    column = np.array(["c1", None, "", "0", float("nan")], dtype=object)
    assert key_present(column).tolist() == [True, False, False, True, False]
    assert key_present(np.array([1.0, math.nan])).tolist() == [True, False]
    arrow = pa.chunked_array([["c1", None], ["", "c2"]])
    assert key_present(arrow).tolist() == [True, False, False, True]


def test_an_event_missing_one_key_counts_in_the_views_whose_key_it_has(
    registry: Registry,
) -> None:
    plan = source_plan(registry, "tx")
    batch = plan.parse(
        [
            (0, event("c1", "m1")),
            (1, event("c1", None)),
            (2, event("c2", "")),
            (3, event(None, "m2")),
            (4, event(None, None)),
            (5, event("", None)),
        ]
    )
    assert batch.offsets.tolist() == [0, 1, 2, 3]
    takes = plan.takers(batch.columns)
    assert takes.tolist() == [[True, True], [True, False], [True, False], [False, True]]
    by_customer, by_merchant = (view_plan(v) for v in plan.views)
    assert by_customer.takes(batch.columns).tolist() == [True, True, True, False]
    assert by_merchant.takes(batch.columns).tolist() == [True, False, False, True]
    assert [r.offset for r in batch.rejected] == [4, 5]
    assert batch.rejected[0].reason == (
        "no feature view can take the event: key field 'customer_id' is null, "
        "key field 'merchant_id' is null"
    )
    assert batch.rejected[1].reason == (
        "no feature view can take the event: key field 'customer_id' is empty, "
        "key field 'merchant_id' is null"
    )
    assert batch.rejected[0].value == event(None, None)


def test_push_accepts_a_row_missing_one_key_and_refuses_a_row_missing_all(
    registry: Registry,
) -> None:
    df = {"customer_id": ["c1", None], "merchant_id": [None, "m1"], "amount": [1.0, 2.0],
          "ts": [100.0, 101.0]}  # fmt: skip
    _, messages = push_messages(registry, "tx", df, 100)
    assert len(messages) == 2
    assert messages[1][0] is None  # no topic key: sent unkeyed, not as the string "None"
    bad = {**df, "merchant_id": [None, None]}
    with pytest.raises(RequestError, match="row 1: no feature view can take the event") as info:
        push_messages(registry, "tx", bad, 100)
    assert info.value.status == 422


def write_log(tmp: Path, registry: Registry, rows: list[dict[str, Any]]) -> EventLog:
    """The rows as the worker logs them: one partition, in offset order."""
    log = EventLog(str(tmp / "offline"))
    ts = np.array([r["ts"] for r in rows], dtype=np.float64)
    frame = pd.DataFrame(
        {
            "customer_id": pd.Series([r["customer_id"] for r in rows], dtype=object),
            "merchant_id": pd.Series([r["merchant_id"] for r in rows], dtype=object),
            "amount": [r["amount"] for r in rows],
            "ts": ts,
            "event_ts": ts,
            "_partition": np.zeros(len(rows), dtype=np.int32),
            "_offset": np.arange(len(rows), dtype=np.int64),
            "_watermark": watermarks_before(ts, -math.inf),
        }
    )
    log.write_batch(registry.sources["tx"], 0, 0, frame)
    return log


def test_training_sets_leave_null_key_events_out_of_that_view(
    tmp_path: Path, registry: Registry
) -> None:
    rows = [
        {"customer_id": "c1", "merchant_id": "m1", "amount": 1.0, "ts": 100.0},
        {"customer_id": "c1", "merchant_id": None, "amount": 2.0, "ts": 101.0},
        {"customer_id": "c1", "merchant_id": "", "amount": 4.0, "ts": 102.0},
        {"customer_id": None, "merchant_id": "m1", "amount": 8.0, "ts": 103.0},
    ]
    log = write_log(tmp_path, registry, rows)
    entities = pd.DataFrame(
        {
            "customer_id": ["c1", None, ""],
            "merchant_id": ["m1", None, ""],
            "event_timestamp": [200.0, 200.0, 200.0],
        }
    )
    features = ["by_customer:n", "by_customer:total", "by_merchant:n", "by_merchant:total"]
    got = get_historical_features(registry, log, entities, features, full_feature_names=True)
    assert got["by_customer__n"].tolist() == [3, 0, 0]
    assert got["by_customer__total"].tolist()[0] == 7.0
    assert got["by_merchant__n"].tolist() == [2, 0, 0]  # the null-key events are in no row
    assert got["by_merchant__total"].tolist()[0] == 9.0
    assert all(pd.isna(v) for v in got["by_merchant__total"].tolist()[1:])


def test_backfill_folds_only_the_events_that_carry_the_views_key(
    tmp_path: Path, registry: Registry
) -> None:
    rows = [
        {"customer_id": "c1", "merchant_id": "m1", "amount": 1.0, "ts": 100.0},
        {"customer_id": "c1", "merchant_id": None, "amount": 2.0, "ts": 101.0},
        {"customer_id": None, "merchant_id": "", "amount": 4.0, "ts": 102.0},
    ]
    log = write_log(tmp_path, registry, rows)
    events, late, skipped = log_events(registry.feature_views["by_merchant"], log, {0: 10})
    assert (events["entity"].tolist(), late, skipped) == (["m1"], 0, 2)
    events, late, skipped = log_events(registry.feature_views["by_customer"], log, {0: 10})
    assert (events["entity"].tolist(), late, skipped) == (["c1", "c1"], 0, 1)
