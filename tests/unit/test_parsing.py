"""Records are parsed strictly against the schema; each refusal names its reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from feature_service.definitions import Source
from feature_service.stream.parsing import parse_records
from feature_service.stream.source_processor import watermarks_before

SOURCE = Source(
    name="tx",
    topic="tx",
    timestamp_field="ts",
    schema={"customer_id": "string", "amount": "float", "n": "int", "ok": "bool"},
    key="customer_id",
    partitions=1,
)
GOOD = {"customer_id": "c1", "amount": 1.5, "n": 2, "ok": True, "ts": 100.0}


def record(**changes: object) -> bytes:
    event = {**GOOD, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{nope", "not valid JSON"),
        (b'{"customer_id": "c1", "amount": 1e400, "n": 1, "ok": true, "ts": 1}', "not valid JSON"),
        (b"[1, 2]", "not a JSON object but list"),
        (None, "empty message (no value)"),
        (record(customer_id=...), "missing field 'customer_id'"),
        (record(customer_id=None), "field 'customer_id' is null"),
        (record(customer_id=""), "key field 'customer_id' is empty"),
        (record(customer_id=7), "field 'customer_id' must be a string, got 7"),
        (record(amount="N/A"), "field 'amount' must be a float, got 'N/A'"),
        (record(amount=True), "field 'amount' must be a float, got True"),
        (record(n=2.5), "field 'n' must be an int, got 2.5"),
        (record(ok="yes"), "field 'ok' must be a bool, got 'yes'"),
        (record(ts=...), "missing timestamp field 'ts'"),
        (record(ts=None), "timestamp field 'ts' is null"),
        (record(ts="yesterday"), "timestamp 'yesterday' is not epoch seconds or ISO-8601"),
    ],
)
def test_bad_record_is_refused_with_its_reason(value: bytes | None, reason: str) -> None:
    batch = parse_records(SOURCE, [(7, value)])
    assert len(batch) == 0
    assert [(r.offset, r.value) for r in batch.rejected] == [(7, value)]
    assert batch.rejected[0].reason.startswith(reason)


def test_good_records_become_typed_columns_in_offset_order() -> None:
    batch = parse_records(
        SOURCE,
        [
            (3, record()),
            (4, record(amount=None, n=5, ok=None, ts="2026-11-01T00:00:00Z", extra="ignored")),
            (5, record(amount=2)),
        ],
    )
    assert batch.offsets.tolist() == [3, 4, 5]
    assert batch.ts.tolist() == [100.0, 1793491200.0, 100.0]
    assert np.isnan(batch.columns["amount"][1]) and batch.columns["amount"][2] == 2.0
    assert batch.columns["n"].tolist() == [2, 5, 2]
    assert batch.columns["ok"].tolist() == [True, None, True]
    assert not batch.rejected


def test_watermark_before_each_event_is_the_newest_earlier_event_time() -> None:
    ts = np.array([10.0, 5.0, 12.0, 11.0])
    assert watermarks_before(ts, float("-inf")).tolist() == [float("-inf"), 10.0, 10.0, 12.0]
    assert watermarks_before(ts, 20.0).tolist() == [20.0, 20.0, 20.0, 20.0]
