"""Point-in-time training sets: each row's features at its own timestamp, from the event log.

`get_historical_features(registry, offline, entity_df, features)` returns `entity_df`
(rows in order, every column kept) plus one column per feature, where row ``i``'s value
is the feature evaluated at ``event_timestamp[i]`` over the offline log with exactly the
online semantics (DESIGN.md, `aggregation.windows`):

- an event counts for a view unless it is late: ``event_ts < _watermark - allowed_lateness``
  (the worker decided lateness online with the same numbers, stored in the log);
- a feature with window ``W`` and hop ``h`` at ``t`` takes the entity's events with
  ``floor(t / h) * h - W <= event_ts <= t`` (`windows.tile_starts`, the worker's own
  function), a lifetime feature every event with ``event_ts <= t``;
- `where` filters are evaluated by `WhereExpr.evaluate_columns` on the same column arrays
  the worker builds; null values are skipped as in `aggregation.algebra`;
- ``first``/``last`` order events by ``(event_ts, seq)`` with ``seq = offset * 4096 +
  partition``, the worker's tiebreak;
- unknown entities and rows before any event get 0 for ``count``/``count_distinct`` and
  null for the rest; every input row is returned.

How (vectorised, no Python loop over rows or events). Per view, the log's needed columns
are read once (`EventLog.scan`), late events dropped, and events sorted by ``(entity,
event_ts, seq)``. Every event gets an int64 key ``entity * (U + 1) + rank(event_ts)``
(``U`` distinct times), which is sorted, so the first and last event of any row's window
are two `numpy.searchsorted` calls over all rows at once. A "stream" is the sub-sequence
of events one feature aggregates (its `where`, its column not null); a prefix count maps
window bounds into each stream. Then per aggregation:

- ``count``: difference of bounds (exact);
- ``sum``/``mean``: prefix sums split into an exact part and a tiny remainder: values are
  rounded to a grid ``2**q`` coarse enough that every partial sum of the rounded values is
  an exact float, so their window differences are exact, and the remainders are below
  ``2**q`` (error below 1e-20 of the log's total). A plain cumulative sum would lose the
  small windows of a large total. A log whose values add up beyond the float64 range is
  summed scaled by ``2**-SUM_SCALE`` (exact: a power of two), so one window's sum
  overflows only if that window's does; an overflowing sum (and var/std) is null, as
  `aggregation.algebra` defines it for the online values;
- ``var``/``std``: the corrected two-pass algorithm over each window's events (gathered
  in bounded chunks), the same as the tile engine's per-tile moments, so large means do
  not cancel (prefix sums of squares would);
- ``min``/``max``: `ufunc.reduceat` over the window ranges, lifetime ones a per-entity
  running extreme; ``first``/``last``/``time_since_last``: the window's first/last event;
- ``count_distinct``: with ``prev[i]`` the previous event of the same entity and value,
  the distinct values of ``[lo, hi)`` are the ``i`` there with ``prev[i] < lo``.

Memory is linear in events + rows (a few arrays of each), never their product: the
gathers of var/std and windowed count_distinct run in chunks of at most `GATHER_BUDGET`
events. Their time is proportional to the total length of the windows, the rest to
``(events + rows) * log``.

Examples: tests/unit/test_historical.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from feature_service.aggregation.algebra import as_float_array, non_null_mask, safe_means
from feature_service.aggregation.windows import tile_starts
from feature_service.definitions import Feature, FeatureView, Registry
from feature_service.events.parsing import column_from_arrow
from feature_service.offline.event_log import EventLog
from feature_service.plan import event_seq, view_plan
from feature_service.requests import RequestError, check_query_time, resolve_features

TIMESTAMP_COLUMN = "event_timestamp"
GATHER_BUDGET = 1 << 21
"""Most window events gathered at once (var/std, windowed count_distinct)."""
SUM_SCALE = 64
"""Prefix sums of a log too large for float64 are kept in units of 2**SUM_SCALE."""

ProgressFn = Callable[[int, int], None]
"""Called with (features done, features in all) as the work advances."""

Int = npt.NDArray[np.int64]
Float = npt.NDArray[np.float64]


def get_historical_features(
    registry: Registry,
    offline: EventLog | str,
    entity_df: pd.DataFrame,
    features: Sequence[str] | None = None,
    feature_service: str | None = None,
    full_feature_names: bool = False,
    progress: ProgressFn | None = None,
    max_offsets: Mapping[str, Mapping[int, int]] | None = None,
) -> pd.DataFrame:
    """`entity_df` with each requested feature evaluated at each row's `event_timestamp`.

    `entity_df` needs the join key of every view asked for and `event_timestamp`
    (datetime, epoch seconds or ISO-8601 strings; naive means UTC). `max_offsets`
    (source name -> partition -> offset) restricts the log to events below those
    offsets, e.g. to what online state has committed (`feature_service.parity`); a partition
    missing from the mapping then contributes nothing.
    Raises `requests.RequestError` (a ValueError) for unknown features or a
    malformed `entity_df`, OSError when the offline store cannot be read.
    """
    log = offline if isinstance(offline, EventLog) else EventLog(offline)
    refs = resolve_features(registry, features, feature_service, full_feature_names)
    if TIMESTAMP_COLUMN not in entity_df.columns:
        raise RequestError(f"entity_df has no {TIMESTAMP_COLUMN!r} column")
    for ref in refs:
        if ref.view.entity.join_key not in entity_df.columns:
            raise RequestError(
                f"feature view {ref.view.name!r} needs entity key "
                f"{ref.view.entity.join_key!r} in entity_df"
            )
    names = [ref.output_name for ref in refs]
    clashes = sorted(set(names) & set(entity_df.columns))
    if clashes:
        raise RequestError(f"entity_df already has column(s) {', '.join(clashes)}")
    t = epoch_seconds(entity_df[TIMESTAMP_COLUMN])

    by_view: dict[str, tuple[FeatureView, list[str]]] = {}
    for ref in refs:
        by_view.setdefault(ref.view.name, (ref.view, []))[1].append(ref.feature)
    total, done = len(refs), 0
    computed: dict[tuple[str, str], Any] = {}
    for view, wanted in by_view.values():
        keys = entity_df[view.entity.join_key].to_numpy()
        limits = None if max_offsets is None else max_offsets.get(view.source.name, {})

        def step(n: int, base: int = done) -> None:
            if progress is not None:
                progress(base + n, total)

        values = view_features(view, wanted, log, keys, t, limits, step)
        for name, column in values.items():
            computed[view.name, name] = column
        done += len(wanted)
    out = entity_df.copy()
    for ref in refs:
        out[ref.output_name] = computed[ref.view.name, ref.feature]
    return out


def epoch_seconds(column: pd.Series) -> Float:
    """Timestamps as float epoch seconds: datetimes (naive = UTC), numbers or ISO strings.

    >>> epoch_seconds(pd.Series(["2026-11-01T00:00:00Z", "2026-11-01 00:00:01"])).tolist()
    [1793491200.0, 1793491201.0]
    """
    if column.isna().any():
        raise RequestError(f"{TIMESTAMP_COLUMN} has {int(column.isna().sum())} missing values")
    if pd.api.types.is_bool_dtype(column):
        raise RequestError(f"{TIMESTAMP_COLUMN} must be datetimes, epoch seconds or ISO-8601")
    if pd.api.types.is_numeric_dtype(column):
        out = column.to_numpy(dtype=np.float64)
    elif isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(column):
        stamps = pd.to_datetime(column, utc=True)
        out = stamps.dt.tz_localize(None).to_numpy("datetime64[ns]").astype(np.int64) / 1e9
    else:
        try:
            stamps = pd.to_datetime(column, utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise RequestError(
                f"{TIMESTAMP_COLUMN} must be datetimes, epoch seconds or ISO-8601: {exc}"
            ) from None
        out = stamps.dt.tz_localize(None).to_numpy("datetime64[ns]").astype(np.int64) / 1e9
    if not np.all(np.isfinite(out)):
        raise RequestError(f"{TIMESTAMP_COLUMN} has values that are not finite")
    if out.size:  # the online API's range of times (years 1900..2199), same message
        check_query_time(float(out.min()), TIMESTAMP_COLUMN)
        check_query_time(float(out.max()), TIMESTAMP_COLUMN)
    return np.asarray(out, dtype=np.float64)


# --------------------------------------------------------------------------- one view


@dataclass
class _Events:
    """Accepted events of one view, sorted by (entity, event_ts, seq)."""

    code: Int  # entity code
    ts: Float
    seq: Int
    columns: dict[str, npt.NDArray[Any]]
    key: Int  # code * (U + 1) + rank of ts in `times` (1-based): sorted
    times: Float  # the distinct event times
    entities: pd.Index  # entity id (str) of each code


@dataclass
class _Queries:
    """The rows, sorted by (entity, t); `order` maps back to entity_df positions."""

    order: npt.NDArray[np.intp]
    code: Int  # -1: entity unknown to the log
    t: Float
    hi: Int  # end (exclusive) of the events at or before t, in `_Events` positions
    known: npt.NDArray[np.bool_]


def view_features(
    view: FeatureView,
    wanted: Sequence[str],
    log: EventLog,
    keys: npt.NDArray[Any],
    t: Float,
    max_offsets: Mapping[int, int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Features `wanted` of `view` for entity `keys` at times `t` (arrays, row order)."""
    feats = [view.feature(name) for name in wanted]
    events = _load_events(view, feats, log, max_offsets)
    queries = _locate(events, keys, t)
    n_rows = len(t)
    bounds: dict[tuple[int, int] | None, tuple[Int, Int]] = {}
    streams: dict[tuple[str | None, str | None], _Stream] = {}
    out: dict[str, Any] = {}
    for j, feature in enumerate(feats):
        window = None if feature.window_s is None else (feature.window_s, feature.hop_s or 0)
        if window not in bounds:
            bounds[window] = _bounds(events, queries, feature)
        skey = (feature.column, None if feature.where is None else feature.where.text)
        if skey not in streams:
            streams[skey] = _Stream.build(view, feature, events)
        stream = streams[skey]
        lo, hi = bounds[window]
        sorted_values = _aggregate(feature, stream, *stream.bounds(lo, hi), queries)
        out[feature.name] = _unsort(sorted_values, queries.order, n_rows)
        if progress is not None:
            progress(j + 1)
    return out


def _load_events(
    view: FeatureView,
    feats: Sequence[Feature],
    log: EventLog,
    max_offsets: Mapping[int, int] | None,
) -> _Events:
    source = view.source
    key_col = view.entity.join_key
    needed = {key_col}
    for f in feats:
        if f.column is not None:
            needed.add(f.column)
        if f.where is not None:
            needed.update(f.where.columns)
    meta = ["event_ts", "_partition", "_offset", "_watermark"]
    table = log.scan(source, [*sorted(needed), *meta])
    ts = np.asarray(table["event_ts"].to_numpy(), dtype=np.float64)
    watermark = np.asarray(table["_watermark"].to_numpy(), dtype=np.float64)
    partition = np.asarray(table["_partition"].to_numpy(), dtype=np.int64)
    offset = np.asarray(table["_offset"].to_numpy(), dtype=np.int64)
    keep = ~view_plan(view).late(ts, watermark)
    if max_offsets is not None:
        limit = np.full(int(partition.max(initial=-1)) + 1, -1, dtype=np.int64)
        for p, o in max_offsets.items():
            if p < limit.size:
                limit[p] = o
        keep &= offset < limit[partition]
    kept = np.flatnonzero(keep)
    codes, uniques = _entity_codes(table[key_col].take(pa.array(kept)))
    ts, seq = ts[kept], event_seq(offset[kept], partition[kept])
    # one sort by (ts, seq) gives the ranks of the times; a stable (radix, for int16
    # codes) sort by entity on top of it gives the (entity, ts, seq) order
    by_time = np.lexsort((seq, ts))
    ts_sorted = ts[by_time]
    new = np.empty(ts_sorted.size, dtype=np.bool_)
    new[:1] = True
    np.not_equal(ts_sorted[1:], ts_sorted[:-1], out=new[1:])
    times = ts_sorted[new]
    rank = np.empty(ts.size, dtype=np.int64)
    rank[by_time] = np.cumsum(new)  # 1-based
    narrow = codes.astype(np.int16) if uniques.size < 2**15 else codes
    order = by_time[np.argsort(narrow[by_time], kind="stable")]
    code = codes[order].astype(np.int64)
    ts, seq, rank = ts[order], seq[order], rank[order]
    taken = pa.array(kept[order])
    columns = {
        c: column_from_arrow(table[c].take(taken), source.schema[c])
        for c in sorted(needed)
        if c != key_col or c in _value_columns(feats)
    }
    key = code * (times.size + 1) + rank
    return _Events(code, ts, seq, columns, key, times, pd.Index(uniques))


def _value_columns(feats: Sequence[Feature]) -> set[str]:
    cols = {f.column for f in feats if f.column is not None}
    for f in feats:
        if f.where is not None:
            cols.update(f.where.columns)
    return cols


def _entity_codes(column: pa.ChunkedArray) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
    """Integer codes of entity ids (as strings, as online keys them) and the ids.

    Dictionary-encoded in Arrow (C), so no Python string per event."""
    if column.type != pa.string():
        column = column.cast(pa.string())
    encoded = column.dictionary_encode().combine_chunks()
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    uniques = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    return codes, uniques


def _locate(events: _Events, keys: npt.NDArray[Any], t: Float) -> _Queries:
    uniques = events.entities
    series = pd.Series(keys, dtype=object)
    null = series.isna().to_numpy()
    code = np.asarray(uniques.get_indexer(series.astype(str)), dtype=np.int64)
    code[null] = -1
    order = np.lexsort((t, code))
    code, t_sorted = code[order], t[order]
    known = code >= 0
    hi_key = code * (events.times.size + 1) + np.searchsorted(events.times, t_sorted, "right")
    hi = np.searchsorted(events.key, hi_key, "right").astype(np.int64)
    hi[~known] = 0
    return _Queries(order, code, t_sorted, hi, known)


def _bounds(events: _Events, queries: _Queries, feature: Feature) -> tuple[Int, Int]:
    """Window [lo, hi) of each (sorted) row in event positions."""
    base = queries.code * (events.times.size + 1)
    if feature.window_s is None:
        lo_key = base
    else:
        hop = feature.hop_s
        assert hop is not None
        start = (tile_starts(queries.t, hop) - feature.window_s).astype(np.float64)
        lo_key = base + np.searchsorted(events.times, start, "left")
    lo = np.searchsorted(events.key, lo_key, "right").astype(np.int64)
    lo[~queries.known] = 0
    return lo, queries.hi


@dataclass
class _Stream:
    """The events one feature aggregates (its `where` passes, its column is not null)."""

    pos: Int | None  # pos[i]: stream events among the first i view events; None: all
    code: Int
    ts: Float
    values: npt.NDArray[Any] | None  # None: no column
    kind: str | None  # schema type of the column
    _cache: dict[str, Any]

    @classmethod
    def build(cls, view: FeatureView, feature: Feature, events: _Events) -> _Stream:
        n = events.ts.size
        member = view_plan(view).where_mask(view.features.index(feature), events.columns, n)
        column = None
        kind = None
        if feature.column is not None:
            column = events.columns[feature.column]
            member &= non_null_mask(column)
            kind = view.source.schema[feature.column]
        if member.all():  # every event: share the view's arrays, no copies
            return cls(None, events.code, events.ts, column, kind, {})
        pos = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(member, out=pos[1:])
        values = None if column is None else column[member]
        return cls(pos, events.code[member], events.ts[member], values, kind, {})

    def bounds(self, lo: Int, hi: Int) -> tuple[Int, Int]:
        """View event positions [lo, hi) as positions in this stream."""
        return (lo, hi) if self.pos is None else (self.pos[lo], self.pos[hi])

    def floats(self) -> Float:
        if "floats" not in self._cache:
            assert self.values is not None
            self._cache["floats"] = as_float_array(self.values)
        out: Float = self._cache["floats"]
        return out

    def exact_prefix(self) -> tuple[Float, Float, int]:
        """Prefix sums of the values split as (exact part, remainder), and the power of two
        they are in units of (0, or `SUM_SCALE` for a log beyond float64); see module doc."""
        if "prefix" not in self._cache:
            x = self.floats()
            with np.errstate(over="ignore"):
                total = float(np.abs(x).sum())
            scale = 0
            if not math.isfinite(total):  # n values below 2**1024 each: below 2**1023 scaled
                scale = SUM_SCALE
                x = np.ldexp(x, -scale)
                total = float(np.abs(x).sum())
            head = np.zeros(x.size + 1)
            tail = np.zeros(x.size + 1)
            if math.isfinite(total) and total > 0:
                q = math.frexp(total)[1] - 52
                rounded = np.ldexp(np.round(np.ldexp(x, -q)), q)
                np.cumsum(rounded, out=head[1:])
                np.cumsum(x - rounded, out=tail[1:])
            else:  # all zero, or too large to split: plain sums
                np.cumsum(x, out=head[1:])
            self._cache["prefix"] = (head, tail, scale)
        prefix: tuple[Float, Float, int] = self._cache["prefix"]
        return prefix

    def previous_same(self) -> Int:
        """prev[i]: the previous stream event of the same entity and value, else -1."""
        if "prev" not in self._cache:
            assert self.values is not None
            if self.kind == "string":
                vcode = pd.factorize(self.values)[0]
            else:  # numbers are one value when equal (1 == 1.0 == True), as online
                vcode = pd.factorize(self.floats() + 0.0)[0]
            n = vcode.size
            order = np.lexsort((np.arange(n), vcode, self.code))
            prev = np.full(n, -1, dtype=np.int64)
            same = (vcode[order][1:] == vcode[order][:-1]) & (
                self.code[order][1:] == self.code[order][:-1]
            )
            prev[order[1:][same]] = order[:-1][same]
            self._cache["prev"] = prev
        prev_: Int = self._cache["prev"]
        return prev_


def _chunks(lo: Int, hi: Int) -> list[tuple[int, int]]:
    """Row ranges whose windows hold at most `GATHER_BUDGET` events together (or one row)."""
    lengths = np.cumsum(hi - lo)
    out = []
    start = 0
    n = lo.size
    while start < n:
        base = lengths[start - 1] if start else 0
        end = int(np.searchsorted(lengths, base + GATHER_BUDGET, "right"))
        end = max(end, start + 1)
        out.append((start, min(end, n)))
        start = end
    return out


def _gather(lo: Int, hi: Int) -> tuple[Int, Int, npt.NDArray[np.bool_]]:
    """Positions of the events of windows [lo, hi) end to end, each non-empty window's
    first index in that list, and which windows are non-empty."""
    n = hi - lo
    nonempty = n > 0
    lens = n[nonempty]
    starts = np.zeros(lens.size, dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    if lens.size == 0:
        return np.zeros(0, dtype=np.int64), starts, nonempty
    # positions as a running sum of steps: 1 inside a window, a jump at each start
    los = lo[nonempty]
    step = np.ones(int(lens.sum()), dtype=np.int64)
    step[0] = los[0]
    step[starts[1:]] = los[1:] - (los[:-1] + lens[:-1]) + 1
    return np.cumsum(step), starts, nonempty


def _aggregate(feature: Feature, stream: _Stream, lo: Int, hi: Int, queries: _Queries) -> Any:
    agg = feature.aggregation
    n = hi - lo
    has = n > 0
    rows = lo.size
    if agg == "count":
        return n
    if agg in ("sum", "mean"):
        head, tail, scale = stream.exact_prefix()
        total = (head[hi] - head[lo]) + (tail[hi] - tail[lo])
        with np.errstate(over="ignore"):  # a window sum beyond float64 is null (algebra)
            value = np.ldexp(total if agg == "sum" else total / np.maximum(n, 1), scale)
        return np.where(has & np.isfinite(value), value, np.nan)
    if agg in ("var", "std"):
        return _moments(stream.floats(), lo, hi, agg)
    if agg in ("min", "max"):
        return _extreme(stream, lo, hi, agg, lifetime=feature.window_s is None)
    if agg == "time_since_last":
        out = np.full(rows, np.nan)
        out[has] = queries.t[has] - stream.ts[hi[has] - 1]
        return out
    if agg in ("first", "last"):
        assert stream.values is not None
        pick = lo if agg == "first" else hi - 1
        return _typed(stream.values, pick, has, stream.kind)
    if agg == "count_distinct":
        prev = stream.previous_same()
        if feature.window_s is None:  # window = entity start..hi: first occurrences
            firsts = np.zeros(prev.size + 1, dtype=np.int64)
            np.cumsum(prev < 0, out=firsts[1:])
            return firsts[hi] - firsts[lo]
        out_n = np.zeros(rows, dtype=np.int64)
        for a, b in _chunks(lo, hi):
            idx, starts, nonempty = _gather(lo[a:b], hi[a:b])
            if idx.size == 0:
                continue
            fresh = prev[idx] < np.repeat(lo[a:b][nonempty], (hi - lo)[a:b][nonempty])
            out_n[a:b][nonempty] = np.add.reduceat(fresh.astype(np.int64), starts)
        return out_n
    raise ValueError(f"unknown aggregation {agg!r}")


def _moments(x: Float, lo: Int, hi: Int, agg: str) -> Float:
    """Sample var/std per window by the corrected two-pass algorithm (as the tiles)."""
    out = np.full(lo.size, np.nan)
    for a, b in _chunks(lo, hi):
        idx, starts, nonempty = _gather(lo[a:b], hi[a:b])
        if idx.size == 0:
            continue
        counts = (hi - lo)[a:b][nonempty]
        xs = x[idx]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            mean0 = safe_means(xs, starts, counts)
            dev = xs - np.repeat(mean0, counts)
            sdev = np.add.reduceat(dev, starts)
            m2 = np.maximum(np.add.reduceat(dev * dev, starts) - sdev * sdev / counts, 0.0)
            # an overflowed M2 is null, as in the algebra
            var = np.where((counts >= 2) & np.isfinite(m2), m2 / (counts - 1), np.nan)
        out[a:b][nonempty] = np.sqrt(var) if agg == "std" else var
    return out


def _extreme(stream: _Stream, lo: Int, hi: Int, agg: str, lifetime: bool) -> Float:
    x = stream.floats()
    has = hi > lo
    out = np.full(lo.size, np.nan)
    if not has.any():
        return out
    if lifetime:  # every window starts at its entity's first event: a running extreme
        key = f"running_{agg}"
        if key not in stream._cache:
            grouped = pd.Series(x).groupby(stream.code, sort=False)
            running = grouped.cummin() if agg == "min" else grouped.cummax()
            stream._cache[key] = running.to_numpy(dtype=np.float64)
        out[has] = stream._cache[key][hi[has] - 1]
        return out + 0.0
    ufunc = np.minimum if agg == "min" else np.maximum
    # rows are sorted by (entity, t), so lo and hi only grow: the in-between pieces
    # reduceat also computes add up to one pass over the stream
    bounds = np.stack([lo[has], hi[has]], axis=1).reshape(-1)
    padded = np.append(x, 0.0)
    out[has] = ufunc.reduceat(padded, bounds)[::2]
    return out + 0.0  # -0.0 -> 0.0, as the algebra


def _typed(
    values: npt.NDArray[Any], pick: Int, has: npt.NDArray[np.bool_], kind: str | None
) -> Any:
    """`values[pick]` where `has`, else null, in a column type that fits `kind`."""
    chosen = values[pick[has]]
    if kind in ("float", "timestamp"):
        out = np.full(pick.size, np.nan)
        out[has] = chosen
        return out
    obj = np.full(pick.size, None, dtype=object)
    obj[has] = chosen
    if kind == "int":
        return pd.array(obj, dtype="Int64")
    if kind == "bool":
        return pd.array(obj, dtype="boolean")
    return obj


def _unsort(values: Any, order: npt.NDArray[np.intp], n: int) -> Any:
    """Values of rows sorted by `order` back in entity_df order."""
    if isinstance(values, pd.api.extensions.ExtensionArray):
        inverse = np.empty(n, dtype=np.intp)
        inverse[order] = np.arange(n)
        return values.take(inverse)
    out = np.empty(n, dtype=np.asarray(values).dtype)
    out[order] = values
    return out
