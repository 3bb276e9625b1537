"""Records are parsed strictly against the schema; each refusal names its reason."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from feature_service.definitions import Source
from feature_service.events.parsing import parse_records
from feature_service.stream.source_processor import watermarks_before

SOURCE = Source(
    name="tx",
    topic="tx",
    timestamp_field="ts",
    schema={
        "customer_id": "string",
        "merchant_id": "string",
        "amount": "float",
        "n": "int",
        "ok": "bool",
    },
    key="customer_id",
    partitions=1,
    join_keys=("customer_id", "merchant_id"),  # a view keyed by merchant reads it too
)
GOOD = {"customer_id": "c1", "merchant_id": "m1", "amount": 1.5, "n": 2, "ok": True, "ts": 100.0}


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
        (record(customer_id=7), "field 'customer_id' must be a string, got 7"),
        (record(amount="N/A"), "field 'amount' must be a float, got 'N/A'"),
        (record(amount=True), "field 'amount' must be a float, got True"),
        (record(n=2.5), "field 'n' must be an int, got 2.5"),
        (record(ok="yes"), "field 'ok' must be a bool, got 'yes'"),
        (record(ts=...), "missing timestamp field 'ts'"),
        (record(ts=None), "timestamp field 'ts' is null"),
        (record(ts="yesterday"), "timestamp 'yesterday' is not epoch seconds or ISO-8601"),
        (record(ts="3000-01-01T00:00:00Z"), "timestamp '3000-01-01T00:00:00Z' is outside"),
        (
            record(ts=1793491500000),
            "timestamp 1793491500000 is outside 1900-01-01..2199-12-31 (epoch milliseconds?",
        ),
        (record(ts=1.7e308), "timestamp 1.7e+308 is outside"),
        (record(ts=-1e30), "timestamp -1e+30 is outside"),
        (record(n=2**63), f"field 'n': {2**63} is outside the int64 range"),
        (record(n=-(2**63) - 1), "field 'n' must be an int"),  # orjson reads it as a float
        (record(n=2**64), "field 'n' must be an int"),
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


def test_int64_bounds_are_accepted() -> None:
    batch = parse_records(SOURCE, [(0, record(n=2**63 - 1)), (1, record(n=-(2**63)))])
    assert batch.columns["n"].tolist() == [2**63 - 1, -(2**63)] and not batch.rejected


def test_an_event_too_far_ahead_of_its_record_time_is_refused() -> None:
    written = 1_800_000_000.0
    day_ahead = written + 86400
    batch = parse_records(
        SOURCE,
        [(0, record(ts=day_ahead)), (1, record(ts=day_ahead + 1)), (2, record(ts=100.0))],
        [written, written, None],
    )
    assert batch.offsets.tolist() == [0, 2]
    assert [r.offset for r in batch.rejected] == [1]
    assert "86401 s ahead of the time the event was written (max_future 86400 s)" in (
        batch.rejected[0].reason
    )


def test_the_future_guard_uses_the_wall_clock_without_record_times() -> None:
    year_2100 = 4_102_444_800.0
    batch = parse_records(SOURCE, [(0, record(ts=year_2100))])
    assert len(batch) == 0 and "ahead of the time the event was written" in (
        batch.rejected[0].reason
    )
    unguarded = dataclasses.replace(SOURCE, max_future_s=None)
    assert len(parse_records(unguarded, [(0, record(ts=year_2100))])) == 1


def test_batches_take_exactly_what_the_rules_one_by_one_take() -> None:
    """The fast path (msgspec, whole batch) and the rules written out record by record
    (`_parse_one`) accept the same records with the same values; timestamps may be ISO
    strings, numbers or (outside the event time) null, and bad records are mixed in."""
    from feature_service.events.parsing import _Invalid, _parse_one

    source = dataclasses.replace(
        SOURCE,
        schema={**SOURCE.schema, "ts": "timestamp", "paid_at": "timestamp"},
    )
    good = {**GOOD, "paid_at": 7.5}
    values = [
        record(**good),
        record(**{**good, "ts": "2026-11-01T00:00:00Z", "paid_at": "2026-11-01T00:00:01"}),
        record(**{**good, "paid_at": None, "amount": 2}),
        record(**{**good, "ts": "yesterday"}),
        record(**{**good, "ok": 1}),
        b"not json",
        record(**{**good, "paid_at": "2014-01-01T00:00:00", "n": 2**63}),
        record(**{**good, "amount": 1e300, "n": -(2**63)}),
    ]
    for batch_values in (values, values[:3], [values[0], values[2]]):
        records = list(enumerate(batch_values))
        batch = parse_records(source, records, [1e9] * len(records))
        expected_rows, expected_offsets, expected_reasons = [], [], []
        for offset, value in records:
            try:
                expected_rows.append(_parse_one(source, value, 1e9))
                expected_offsets.append(offset)
            except _Invalid as exc:
                expected_reasons.append((offset, str(exc)))
        assert batch.offsets.tolist() == expected_offsets
        assert [(r.offset, r.reason) for r in batch.rejected] == expected_reasons
        assert batch.ts.tolist() == [ts for ts, _ in expected_rows]
        for c, name in enumerate(source.schema):
            got = [
                None if isinstance(v, float) and np.isnan(v) else v
                for v in batch.columns[name].tolist()
            ]
            assert got == [row[c] for _, row in expected_rows], name
