"""Turn raw Kafka records into typed columns, and say exactly why a record is refused.

Every field of the source schema must be present; the timestamp must not be null;
other fields may be null, join keys too: which views take an event whose key for one
of them is null or empty is the plan's rule (`feature_service.plan.SourcePlan.parse`,
which refuses only an event no view of its source can take). Types are strict: a `float` field
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
`/push` both parse through `plan.SourcePlan.parse` (this module's `parse_records`,
then the key rule), so they refuse the same events.

>>> src = Source("tx", "tx", "ts", {"customer_id": "string", "amount": "float"}, "customer_id", 1)
>>> batch = parse_records(src, [(0, b'{"customer_id": "c1", "amount": 2, "ts": 10.5}'),
...                             (1, b'{"customer_id": "c1", "amount": "N/A", "ts": 11}')])
>>> batch.columns["amount"].tolist(), batch.ts.tolist(), [r.reason for r in batch.rejected]
([2.0], [10.5], ["field 'amount' must be a float, got 'N/A'"])
"""

from __future__ import annotations

import operator
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa

from feature_service.aggregation.windows import (
    EARLIEST_TIME,
    LATEST_TIME,
)
from feature_service.definitions import Source
from feature_service.times import InvalidTime, parse_time


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


def parse_timestamp(value: Any) -> float:
    """Epoch seconds from a JSON number or an ISO-8601 string (naive means UTC), exact
    to the microsecond: `feature_service.times.parse_time`, the one conversion of times
    that `as_of` and training-set rows use too.

    >>> parse_timestamp("2026-11-01T00:00:00Z"), parse_timestamp(5)
    (1793491200.0, 5.0)
    """
    try:
        return parse_time(value)
    except InvalidTime as exc:
        raise _Invalid(str(exc)) from None


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
    records: Sequence[tuple[int, bytes | dict[str, Any] | None]],
    written_at: Sequence[float | None] | None = None,
) -> ParsedBatch:
    """Parse `(offset, value)` records of one partition against `source`'s schema.

    A value is JSON text, or an event already decoded from another format (a dict of
    fields: `stream.source_decoder` for Avro and Protobuf), which meets the same rules.

    `written_at`: each record's time on the topic (epoch seconds, None if unknown), the
    reference of the `max_future` guard; without it, the wall clock.

    Two paths, one set of rules. Each record is first decoded straight into a typed
    struct by msgspec (C, strict types, `_fast_decoder`) and its times checked for the
    whole batch at once; a record that does not pass that way (invalid, or a time
    given as an ISO-8601 string) goes through `_parse_one`, the rules written out one
    by one, which accepts it or names the first problem. The fast path accepts only
    what `_parse_one` accepts, with the same values.
    """
    now = time.time()
    decoder, names = _fast_decoder(source)
    struct = decoder.type
    schema = list(source.schema.items())
    n = len(records)
    structs: list[Any] = []
    slow: list[int] = []
    for i, (_, value) in enumerate(records):
        try:
            if type(value) is dict:
                structs.append(msgspec.convert(value, struct))
            else:
                structs.append(decoder.decode(value))
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError):
            structs.append(None)
            slow.append(i)
    fast = [i for i, struct in enumerate(structs) if struct is not None] if slow else range(n)
    decoded = [structs[i] for i in fast] if slow else structs
    by_name = {name: list(map(operator.attrgetter(name), decoded)) for name in names}
    stamps = _fast_times(by_name[source.timestamp_field], len(fast))
    ok = np.isfinite(stamps) & (stamps >= EARLIEST_TIME) & (stamps < LATEST_TIME)
    if source.max_future_s is not None:
        reference = _reference_times(written_at, n, now)
        ok &= ~(stamps > (reference[fast] if slow else reference) + source.max_future_s)
    fast_columns = {}
    for name, kind in schema:
        if kind == "timestamp":  # an ISO-8601 string: the slow path parses it
            fast_columns[name] = _fast_times(by_name[name], len(fast))
            ok &= ~np.fromiter((type(v) is str for v in by_name[name]), np.bool_, len(fast))
            continue
        fast_columns[name] = _column(by_name[name], kind)
        if kind == "float":  # msgspec refuses numbers beyond float64; never infinite
            ok &= ~np.isinf(fast_columns[name])
    if not ok.all():
        bad = [fast[j] for j in np.flatnonzero(~ok).tolist()]
        slow = sorted([*slow, *bad])
    if not slow:
        return ParsedBatch(
            offsets=np.fromiter((o for o, _ in records), dtype=np.int64, count=n),
            ts=stamps,
            columns=fast_columns,
        )
    rows: dict[int, tuple[float, list[Any]]] = {}
    rejected: list[Rejection] = []
    for i in slow:
        offset, value = records[i]
        written = written_at[i] if written_at is not None else None
        try:
            rows[i] = _parse_one(source, value, now if written is None else written)
        except _Invalid as exc:
            raw = None if isinstance(value, dict) else value  # the caller keeps the bytes
            rejected.append(Rejection(offset, str(exc), raw))
    keep = np.ones(len(fast), dtype=np.bool_)
    position = {i: j for j, i in enumerate(fast)}
    for i in slow:
        if i in position:
            keep[position[i]] = False
    kept = np.flatnonzero(keep)
    fast_offsets = np.asarray([records[i][0] for i in fast], dtype=np.int64)
    if not rows:  # the usual case: the records the fast path missed are all refused
        return ParsedBatch(
            offsets=fast_offsets[kept],
            ts=stamps[kept],
            columns={name: column[kept] for name, column in fast_columns.items()},
            rejected=sorted(rejected, key=lambda r: r.offset),
        )
    fast_at = {fast[j]: j for j in kept.tolist()}
    accepted = sorted([*fast_at, *rows])
    columns = {}
    for c, (name, kind) in enumerate(schema):
        column = fast_columns[name]
        values = [column[fast_at[i]] if i in fast_at else rows[i][1][c] for i in accepted]
        columns[name] = _column(values, kind)
    ts = [float(stamps[fast_at[i]]) if i in fast_at else rows[i][0] for i in accepted]
    return ParsedBatch(
        offsets=np.asarray([records[i][0] for i in accepted], dtype=np.int64),
        ts=np.asarray(ts, dtype=np.float64),
        columns=columns,
        rejected=sorted(rejected, key=lambda r: r.offset),
    )


def _reference_times(
    written_at: Sequence[float | None] | None, n: int, now: float
) -> npt.NDArray[np.float64]:
    """Each record's time on the topic, the wall clock where unknown."""
    if written_at is None:
        return np.full(n, now)
    try:
        return np.asarray(written_at, dtype=np.float64).reshape(n)
    except (TypeError, ValueError):
        return np.asarray([now if w is None else w for w in written_at], dtype=np.float64)


def _fast_times(values: Sequence[Any], n: int) -> npt.NDArray[np.float64]:
    """Times decoded as numbers; NaN where one is null or a string (the slow path parses
    ISO-8601)."""
    try:
        return np.asarray(values, dtype=np.float64).reshape(n)
    except (TypeError, ValueError):
        return np.asarray(
            [v if isinstance(v, float | int) else np.nan for v in values], dtype=np.float64
        )


_DECODERS: dict[tuple[Any, ...], tuple[Any, tuple[str, ...]]] = {}
_FAST_TYPES: dict[str, Any] = {
    "float": float,
    "string": str,
    "int": Annotated[int, msgspec.Meta(ge=_INT64[0], le=_INT64[1])],
    "bool": bool,
    "timestamp": float | str,
}


def _fast_decoder(source: Source) -> tuple[Any, tuple[str, ...]]:
    """A msgspec decoder of `source`'s events into a struct of its schema's fields
    (all required; null allowed except in the timestamp)."""
    cache_key = (tuple(source.schema.items()), source.timestamp_field)
    found = _DECODERS.get(cache_key)
    if found is None:
        fields = []
        for name, kind in source.schema.items():
            typ = _FAST_TYPES[kind]
            if name != source.timestamp_field:
                typ = typ | None
            fields.append((name, typ))
        if source.timestamp_field not in source.schema:
            fields.append((source.timestamp_field, float | str))
        struct = msgspec.defstruct("Event", fields, gc=False)  # scalars only: no cycles
        names = tuple(name for name, _ in fields)
        found = _DECODERS[cache_key] = (msgspec.json.Decoder(struct), names)
    return found


def _parse_one(
    source: Source, value: bytes | dict[str, Any] | None, reference: float
) -> tuple[float, list[Any]]:
    """One record by the rules, one by one: its time and its row (schema order), or
    `_Invalid` naming the first problem. `reference` is the record's time on the topic."""
    schema = list(source.schema.items())
    ts_field = source.timestamp_field
    if value is None:
        raise _Invalid("empty message (no value)")
    try:
        document = value if isinstance(value, dict) else orjson.loads(value)
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
            if name == ts_field:
                raise _Invalid(f"field {name!r} is null")
            row.append(None)
        else:
            row.append(_check(name, kind, cell))
    max_future = source.max_future_s
    if max_future is not None and ts > reference + max_future:
        raise _Invalid(
            f"timestamp {raw_ts!r} is {ts - reference:.0f} s ahead of the time "
            f"the event was written (max_future {max_future} s)"
        )
    return ts, row


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
        try:
            return np.asarray(values, dtype=np.float64).reshape(len(values))
        except (TypeError, ValueError):  # nulls
            return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column
