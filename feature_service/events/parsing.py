"""Turn raw Kafka records into typed columns, and say exactly why a record is refused.

Every field of the source schema must be present. The join keys (the topic key and the
entity column of every view of the source) must be neither null nor empty, and the
timestamp must not be null; other fields may be null. Types are strict: a `float` field
takes JSON numbers, an `int` field integers within int64, `string` strings, `bool`
true/false, and a `timestamp` epoch seconds or an ISO-8601 string (naive times are UTC)
in years 1900..2199 (`aggregation.windows.TIME_RANGE`). Extra fields are ignored.
Numbers JSON cannot hold exactly (1e400, NaN) make the record invalid JSON, so no
infinity ever reaches the aggregation state.

Event time is also guarded against the future: an event more than the source's
`max_future` (default 1 day) ahead of the time its record was written to the topic (the
Kafka record timestamp; the wall clock for `/push` and when a record has none) is
refused, so one bad clock cannot make every later event of its partition late. The
record's own time, not the worker's clock, keeps the decision the same when a
partition is replayed, which exactly-once needs.

A refused record becomes a `Rejection` naming the first problem; the worker sends it
to the source's dead-letter topic and `/push` answers 422 with it. The worker and
`/push` call the same `parse_records`, so they refuse the same events.

>>> src = Source("tx", "tx", "ts", {"customer_id": "string", "amount": "float"}, "customer_id", 1)
>>> batch = parse_records(src, [(0, b'{"customer_id": "c1", "amount": 2, "ts": 10.5}'),
...                             (1, b'{"customer_id": "c1", "amount": "N/A", "ts": 11}')])
>>> batch.columns["amount"].tolist(), batch.ts.tolist(), [r.reason for r in batch.rejected]
([2.0], [10.5], ["field 'amount' must be a float, got 'N/A'"])
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa

from feature_service.aggregation.windows import TIME_RANGE, in_time_range
from feature_service.definitions import Source


@dataclass(frozen=True)
class Rejection:
    """A record that cannot be accepted, and why."""

    offset: int
    reason: str
    value: bytes | None


@dataclass
class ParsedBatch:
    """The accepted records of a batch as columns, in offset order, plus the refused ones."""

    offsets: npt.NDArray[np.int64]
    ts: npt.NDArray[np.float64]
    columns: dict[str, npt.NDArray[Any]]
    rejected: list[Rejection] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)


class _Invalid(ValueError):
    pass


_INT64 = (-(2**63), 2**63 - 1)


def _in_range(ts: float, raw: Any) -> float:
    if in_time_range(ts):
        return ts
    hint = ""
    if isinstance(raw, (int, float)) and in_time_range(ts / 1000):
        hint = " (epoch milliseconds? times are epoch seconds)"
    raise _Invalid(f"timestamp {raw!r} is outside {TIME_RANGE}{hint}")


def parse_timestamp(value: Any) -> float:
    """Epoch seconds from a JSON number or an ISO-8601 string (naive means UTC).

    >>> parse_timestamp("2026-11-01T00:00:00Z"), parse_timestamp(5)
    (1793491200.0, 5.0)
    """
    if isinstance(value, bool):
        raise _Invalid("a timestamp must be epoch seconds or ISO-8601, got a boolean")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise _Invalid(f"timestamp {value!r} is not finite")
        return _in_range(float(value), value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _Invalid(f"timestamp {value!r} is not epoch seconds or ISO-8601") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return _in_range(parsed.timestamp(), value)
    raise _Invalid(f"a timestamp must be epoch seconds or ISO-8601, got {value!r}")


def _check(name: str, kind: str, value: Any) -> Any:
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Invalid(f"field {name!r} must be a float, got {value!r}")
    if kind == "string":
        if isinstance(value, str):
            return value
        raise _Invalid(f"field {name!r} must be a string, got {value!r}")
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            if not _INT64[0] <= value <= _INT64[1]:
                raise _Invalid(f"field {name!r}: {value} is outside the int64 range")
            return value
        raise _Invalid(f"field {name!r} must be an int, got {value!r}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise _Invalid(f"field {name!r} must be a bool, got {value!r}")
    try:
        return parse_timestamp(value)
    except _Invalid as exc:
        raise _Invalid(f"field {name!r}: {exc}") from None


def parse_records(
    source: Source,
    records: Sequence[tuple[int, bytes | None]],
    written_at: Sequence[float | None] | None = None,
) -> ParsedBatch:
    """Parse `(offset, value)` records of one partition against `source`'s schema.

    `written_at`: each record's time on the topic (epoch seconds, None if unknown), the
    reference of the `max_future` guard; without it, the wall clock.
    """
    schema = list(source.schema.items())
    ts_field = source.timestamp_field
    keys = set(source.join_keys) | ({source.key} if source.key is not None else set())
    key_index = [(_index(schema, k), k) for k in sorted(keys) if k in source.schema]
    required = keys | {ts_field}
    now = time.time()
    max_future = source.max_future_s
    rows: list[list[Any]] = []
    offsets: list[int] = []
    stamps: list[float] = []
    rejected: list[Rejection] = []
    for i, (offset, value) in enumerate(records):
        try:
            if value is None:
                raise _Invalid("empty message (no value)")
            try:
                document = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                raise _Invalid(f"not valid JSON: {exc}") from None
            if not isinstance(document, dict):
                raise _Invalid(f"not a JSON object but {type(document).__name__}")
            if ts_field not in document:
                raise _Invalid(f"missing timestamp field {ts_field!r}")
            raw_ts = document[ts_field]
            if raw_ts is None:
                raise _Invalid(f"timestamp field {ts_field!r} is null")
            ts = parse_timestamp(raw_ts)
            row: list[Any] = []
            for name, kind in schema:
                if name not in document:
                    raise _Invalid(f"missing field {name!r}")
                cell = document[name]
                if cell is None:
                    if name in required:
                        raise _Invalid(f"field {name!r} is null")
                    row.append(None)
                else:
                    row.append(_check(name, kind, cell))
            for index, key in key_index:
                if row[index] == "":
                    raise _Invalid(f"key field {key!r} is empty")
            if max_future is not None:
                written = written_at[i] if written_at is not None else None
                reference = now if written is None else written
                if ts > reference + max_future:
                    raise _Invalid(
                        f"timestamp {raw_ts!r} is {ts - reference:.0f} s ahead of the time "
                        f"the event was written (max_future {max_future} s)"
                    )
        except _Invalid as exc:
            rejected.append(Rejection(offset, str(exc), value))
            continue
        rows.append(row)
        offsets.append(offset)
        stamps.append(ts)
    columns = {
        name: _column([row[i] for row in rows], kind) for i, (name, kind) in enumerate(schema)
    }
    return ParsedBatch(
        offsets=np.asarray(offsets, dtype=np.int64),
        ts=np.asarray(stamps, dtype=np.float64),
        columns=columns,
        rejected=rejected,
    )


def _index(schema: list[tuple[str, str]], name: str) -> int:
    for i, (column, _) in enumerate(schema):
        if column == name:
            return i
    raise KeyError(name)


def column_from_arrow(column: pa.ChunkedArray, kind: str) -> npt.NDArray[Any]:
    """A column of the offline log as `parse_records` builds it: float64 with NaN for
    `float` and `timestamp`, objects (None for null) for the rest."""
    if kind in ("float", "timestamp"):
        return np.asarray(column.to_numpy(), dtype=np.float64)
    if kind == "string":
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)
    return np.asarray(column.to_pandas(integer_object_nulls=True).to_numpy(), dtype=object)


def _column(values: list[Any], kind: str) -> npt.NDArray[Any]:
    """Floats and timestamps as float64 (NaN for null); everything else as objects."""
    if kind in ("float", "timestamp"):
        return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column
