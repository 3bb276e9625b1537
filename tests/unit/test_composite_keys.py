"""Entities with several join keys (`join_keys: [customer_id, merchant_id]`): one id per
tuple (`keys.EntityKey`), the same in the stream's plan, the backfill, the training sets
(one pass and bucketed) and the lookups; a row or event with a key column null or
empty names no entity (issue 25, item 3)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_service.cli.export import render_features_py
from feature_service.definitions import DefinitionError, Registry, load_definitions
from feature_service.keys import EntityKey, key_text
from feature_service.offline.buckets import bucketed_historical_features, key_buckets, row_buckets
from feature_service.offline.event_log import EventLog
from feature_service.offline.feature_log import feature_log
from feature_service.offline.historical import get_historical_features
from feature_service.plan import source_plan, view_plan
from feature_service.requests import RequestError, entity_rows, resolve_features
from feature_service.stream.backfill import log_events
from feature_service.stream.source_processor import watermarks_before

PAIR = EntityKey(("customer_id", "merchant_id"))

# Values that would collide under a naive "a,b" or "a|b" join: separators, quotes,
# brackets, backslashes, escapes, empty-looking and non-ASCII texts, integers.
_tricky = st.sampled_from(["a", "a,b", "b", ",", '","', '"', "\\", '\\"', "[", "]", 'a"', "é", "5"])
_value = st.one_of(_tricky, st.text(min_size=1, max_size=6), st.integers(-(2**63), 2**63 - 1))
_tuple = st.lists(_value, min_size=2, max_size=3)


@settings(max_examples=400, deadline=None)
@given(a=_tuple, b=_tuple)
def test_distinct_tuples_never_share_an_id(a: list[Any], b: list[Any]) -> None:
    if len(a) != len(b):
        b = (b * 3)[: len(a)]
    key = EntityKey(tuple(f"k{i}" for i in range(len(a))))
    same_texts = [key_text(v) for v in a] == [key_text(v) for v in b]
    assert (key.id(a) == key.id(b)) == same_texts


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(_tuple.filter(lambda t: len(t) == 2), min_size=1, max_size=30))
def test_an_id_reads_back_as_its_values_and_every_path_gives_it(rows: list[list[Any]]) -> None:
    texts = [[key_text(v) for v in row] for row in rows]
    one_by_one = [PAIR.id(row) for row in rows]
    assert [PAIR.values(i) for i in one_by_one] == [tuple(t) for t in texts]
    columns = [np.array([t[j] for t in texts], dtype=object) for j in range(2)]
    assert PAIR.ids(columns).tolist() == one_by_one  # the stream, the backfill
    assert PAIR.id_list(columns) == one_by_one  # a lookup's
    arrow = [pa.array([t[j] for t in texts], type=pa.string()) for j in range(2)]
    assert PAIR.arrow_ids(arrow).to_pylist() == one_by_one  # the offline log
    assert PAIR.row_ids(columns).tolist() == one_by_one  # training-set rows


def test_an_integer_and_its_text_are_one_entity_in_a_composite_key_too() -> None:
    assert PAIR.id(["c1", 5]) == PAIR.id(["c1", "5"]) == '["c1","5"]'
    ints = [pa.array(["c1"]), pa.array([5], type=pa.int64())]
    assert PAIR.arrow_ids(ints).to_pylist() == ['["c1","5"]']
    assert (
        key_buckets(ints, 16).tolist()
        == key_buckets([pa.array(["c1"]), pa.array(["5"])], 16).tolist()
    )


def test_a_row_with_any_key_column_null_or_empty_names_no_entity() -> None:
    customers = ["c1", None, "", "c2", "c3"]
    merchants = ["m1", "m1", "m1", None, float("nan")]
    assert PAIR.id_list([customers, merchants]) == ['["c1","m1"]', None, None, None, None]
    rows = PAIR.row_ids([np.array(customers, dtype=object), np.array(merchants, dtype=object)])
    assert rows.tolist() == ['["c1","m1"]', None, None, None, None]
    arrow = PAIR.arrow_ids([pa.array(customers), pa.array(["m1", "m1", "m1", None, None])])
    assert arrow.to_pylist() == ['["c1","m1"]', None, None, None, None]
    buckets = row_buckets([pd.Series(customers), pd.Series(merchants)], 8)
    assert buckets[0] >= 0 and (buckets[1:] == -1).all()


# ------------------------------------------------------------------ definitions

DEFS = """
entities:
  - {name: customer, join_key: customer_id}
  - {name: pair, join_keys: [customer_id, merchant_id]}
sources:
  - name: tx
    topic: tx
    timestamp_field: ts
    key: customer_id
    schema: {customer_id: string, merchant_id: int, amount: float}
feature_views:
  - name: by_customer
    source: tx
    entity: customer
    features:
      - {name: n, aggregation: count}
  - name: by_pair
    source: tx
    entity: pair
    features:
      - {name: n, aggregation: count}
      - {name: total, column: amount, aggregation: sum}
      - {name: n_1d, aggregation: count, window: 1d}
"""


@pytest.fixture()
def registry(tmp_path: Path) -> Registry:
    path = tmp_path / "defs.yaml"
    path.write_text(DEFS)
    return load_definitions(path)


def test_an_entity_takes_join_key_or_join_keys_and_not_both(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFS)
    for entity, message in (
        ({"name": "pair", "join_key": "customer_id", "join_keys": ["customer_id"]}, "exactly one"),
        ({"name": "pair"}, "exactly one"),
        ({"name": "pair", "join_keys": ["customer_id", "customer_id"]}, "twice"),
        ({"name": "pair", "join_keys": []}, "at least 1"),
    ):
        data["entities"][1] = entity
        (tmp_path / "defs.yaml").write_text(yaml.safe_dump(data))
        with pytest.raises(DefinitionError, match=message) as caught:
            load_definitions(tmp_path)
        assert "entities[1]" in str(caught.value)


def test_each_join_key_must_be_a_column_of_the_source(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFS)
    data["entities"][1]["join_keys"] = ["customer_id", "terminal_id"]
    (tmp_path / "defs.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(DefinitionError, match=r"feature_views\[1\]\.entity: .*'terminal_id'"):
        load_definitions(tmp_path)


def test_the_pair_view_takes_an_event_only_with_both_keys(registry: Registry) -> None:
    plan = source_plan(registry, "tx")
    records = [
        (0, {"customer_id": "c1", "merchant_id": 1}),
        (1, {"customer_id": "c1", "merchant_id": None}),
        (2, {"customer_id": None, "merchant_id": 1}),
    ]
    batch = plan.parse(
        [(o, json.dumps({**e, "amount": 1.0, "ts": 100.0}).encode()) for o, e in records]
    )
    assert batch.offsets.tolist() == [0, 1]  # the customer view takes event 1
    assert plan.takers(batch.columns).tolist() == [[True, True], [True, False]]
    assert view_plan(registry.feature_views["by_pair"]).takes(batch.columns).tolist() == [
        True,
        False,
    ]
    (refused,) = batch.rejected
    assert refused.reason == "no feature view can take the event: key field 'customer_id' is null"


def test_a_lookup_needs_every_key_column_and_names_the_missing_one(registry: Registry) -> None:
    refs = resolve_features(registry, ["by_pair:n"])
    assert entity_rows(refs, {"customer_id": ["c1"], "merchant_id": [1]}, 10) == 1
    with pytest.raises(RequestError, match="feature view 'by_pair' needs entity key 'merchant_id'"):
        entity_rows(refs, {"customer_id": ["c1"]}, 10)


def write_log(tmp: Path, registry: Registry, rows: list[dict[str, Any]]) -> EventLog:
    log = EventLog(str(tmp / "offline"))
    ts = np.array([r["ts"] for r in rows], dtype=np.float64)
    frame = pd.DataFrame(
        {
            "customer_id": pd.Series([r["customer_id"] for r in rows], dtype=object),
            "merchant_id": pd.array([r["merchant_id"] for r in rows], dtype="Int64"),
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


ROWS = [
    {"customer_id": "c1", "merchant_id": 1, "amount": 1.0, "ts": 100.0},
    {"customer_id": "c1", "merchant_id": 2, "amount": 2.0, "ts": 101.0},
    {"customer_id": "c1", "merchant_id": 1, "amount": 4.0, "ts": 102.0},
    {"customer_id": "c2", "merchant_id": 1, "amount": 8.0, "ts": 103.0},
    {"customer_id": "c1", "merchant_id": None, "amount": 16.0, "ts": 104.0},
    {"customer_id": '","', "merchant_id": 1, "amount": 32.0, "ts": 105.0},
]


def test_training_sets_join_on_every_key_column(tmp_path: Path, registry: Registry) -> None:
    log = write_log(tmp_path, registry, ROWS)
    entity_df = pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c2", "c2", '","', "c1", None, ""],
            "merchant_id": pd.array([1, 2, 1, 2, 1, None, 1, 1], dtype="Int64"),
            "event_timestamp": [200.0, 200.0, 200.0, 200.0, 200.0, 200.0, 200.0, 200.0],
            "label": range(8),
        }
    )
    features = ["by_pair:n", "by_pair:total", "by_customer:n"]
    got = get_historical_features(registry, log, entity_df, features, full_feature_names=True)
    assert got["by_pair__n"].tolist() == [2, 1, 1, 0, 1, 0, 0, 0]
    assert got["by_pair__total"].tolist()[:3] == [5.0, 2.0, 8.0]
    assert got["by_pair__total"].tolist()[4] == 32.0
    assert got["by_customer__n"].tolist()[:2] == [4, 4]  # the customer view takes event 4
    # the bucketed engine (several buckets, in this process) gives the same frame
    bucketed = bucketed_historical_features(
        registry, log, entity_df, features, full_feature_names=True, workers=1, buckets=4
    )
    pd.testing.assert_frame_equal(bucketed, got, check_dtype=False)
    # integers read as floats beside a null (a CSV with a blank): the same entities
    floats = entity_df.assign(merchant_id=entity_df["merchant_id"].astype("float64"))
    again = get_historical_features(registry, log, floats, features, full_feature_names=True)
    assert again["by_pair__n"].tolist() == got["by_pair__n"].tolist()
    with pytest.raises(RequestError, match="needs entity key 'merchant_id' in entity_df"):
        get_historical_features(registry, log, entity_df.drop(columns="merchant_id"), features[:2])


def test_backfill_keys_the_pair_as_the_stream_does(tmp_path: Path, registry: Registry) -> None:
    log = write_log(tmp_path, registry, ROWS)
    events, late, skipped = log_events(registry.feature_views["by_pair"], log, {0: 10})
    assert (late, skipped) == (0, 1)
    assert events["entity"].tolist() == [
        '["c1","1"]', '["c1","2"]', '["c1","1"]', '["c2","1"]', '["\\",\\"","1"]'
    ]  # fmt: skip


def test_export_feast_gives_a_composite_view_one_feast_entity_per_column(
    registry: Registry,
) -> None:
    text = render_features_py(registry, "defs")
    assert "entity_customer = Entity(\n    name='customer',\n    join_keys=['customer_id']" in text
    assert "entity_pair_merchant_id = Entity(\n    name='pair_merchant_id',\n" in text
    assert "    join_keys=['merchant_id'],\n    value_type=ValueType.INT64," in text
    assert "    entities=[entity_customer, entity_pair_merchant_id]," in text
    assert "        Field(name='merchant_id', dtype=Int64)," in text
    compile(text, "features.py", "exec")


def test_the_feature_log_of_a_pair_view_is_keyed_by_both_columns(
    tmp_path: Path, registry: Registry
) -> None:
    log = write_log(tmp_path, registry, ROWS)
    table = feature_log(registry, log, registry.feature_views["by_pair"])
    assert table["merchant_id"].tolist() == [1, 2, 1, 1, None, 1]  # integers, not 1.0
    assert table["n"].tolist() == [1, 1, 2, 1, 0, 1]
    assert table["total"].tolist()[:4] == [1.0, 2.0, 5.0, 8.0]
