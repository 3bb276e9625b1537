"""Point-in-time training sets: each row's features at its own timestamp, from the event log.

`get_historical_features(registry, offline, entity_df, features)` returns `entity_df`
(rows in order, every column kept) plus one column per feature, where row ``i``'s value
is the feature evaluated at ``event_timestamp[i]`` over the offline log with exactly the
online semantics (DESIGN.md, `aggregation.windows`):

- an event counts for a view unless it is late, by the view's plan (`feature_service.plan`,
  the same function and numbers the worker used online, stored in the log);
- a feature with window ``W`` and hop ``h`` at ``t`` takes the entity's events with
  ``floor(t / h) * h - W <= event_ts <= t`` (`windows.window_starts`, the worker's own
  arithmetic), a lifetime feature every event with ``event_ts <= t``;
- `where` filters and the ``(event_ts, seq)`` order are the plan's, null values are
  skipped as in `aggregation.kinds`;
- unknown entities and rows before any event get 0 for ``count``/``count_distinct`` and
  null for the rest; every input row is returned;
- derived features are evaluated after the aggregations by their expressions
  (`feature_service.derived`, as online), request fields taken from `entity_df`'s
  columns of those names.

How (vectorised, no Python loop over rows or events): this module only loads, locates
and unsorts. Per view, the log's needed columns are read once (`EventLog.scan`, each
``(partition, offset)`` once), late events dropped, and events sorted by ``(entity,
event_ts, seq)``. The first and last event of every row's window
are found by binary search for all rows at once (`window_events.EventIndex`, which the
online reads use too). The events a feature
aggregates (its `where`, its column not null) are an `aggregation.window_events.
WindowEvents`; its aggregation's own class computes every row's window from them
(`Aggregation.over_windows`, beside the online fold and merge of the same statistic),
through the window driver the online reads use too (`window_events.WindowDriver`).
`features_at` is that evaluation over events given (one bucket of entities, say).

Examples: tests/unit/test_historical.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from feature_service.aggregation.spec import aggregation_of
from feature_service.aggregation.window_events import EventIndex, WindowDriver, WindowEvents
from feature_service.definitions import Feature, FeatureView, Registry
from feature_service.derived import derive, needs, request_column, service_values
from feature_service.events.parsing import column_from_arrow
from feature_service.keys import key_texts
from feature_service.offline.event_log import EventLog
from feature_service.offline.log_events import LogEvents
from feature_service.plan import view_plan
from feature_service.requests import FeatureRef, RequestError, resolve_features
from feature_service.times import InvalidTime, time_column

TIMESTAMP_COLUMN = "event_timestamp"

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

    `entity_df` needs the join keys of every view asked for (each column of a composite
    key) and `event_timestamp`
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
    reads = [r for ref in refs for r in ref.reads]  # a service's expression: its inputs
    for ref in reads:
        for key in ref.view.entity.join_keys:
            if key not in entity_df.columns:
                raise RequestError(
                    f"feature view {ref.view.name!r} needs entity key {key!r} in entity_df"
                )
    service_request = service_request_columns(refs, entity_df)
    names = [ref.output_name for ref in refs]
    clashes = sorted(set(names) & set(entity_df.columns))
    if clashes:
        raise RequestError(f"entity_df already has column(s) {', '.join(clashes)}")
    t = epoch_seconds(entity_df[TIMESTAMP_COLUMN])

    by_view: dict[str, tuple[FeatureView, list[str]]] = {}
    for ref in reads:
        wanted_of = by_view.setdefault(ref.view.name, (ref.view, []))[1]
        if ref.feature not in wanted_of:
            wanted_of.append(ref.feature)
    total, done = sum(len(w) for _, w in by_view.values()), 0
    computed: dict[tuple[str, str], Any] = {}
    plans = {name: needs(view, wanted) for name, (view, wanted) in by_view.items()}
    for name, plan in plans.items():
        for field in plan.request_fields:
            if field not in entity_df.columns:
                raise RequestError(
                    f"feature view {name!r} needs request field {field!r}: add it as a "
                    "column of entity_df"
                )
    for view, wanted in by_view.values():
        # a row with a join key null or empty names no entity: the values of no events
        keys = view.entity.key.row_ids([entity_df[c] for c in view.entity.join_keys])
        limits = None if max_offsets is None else max_offsets.get(view.source.name, {})
        plan = plans[view.name]

        def step(n: int, base: int = done) -> None:
            if progress is not None:
                progress(base + n, total)

        values = view_features(view, plan.aggregations, log, keys, t, limits, step)
        if plan.derived:  # after the aggregations, by the one evaluator (`derived`)
            request = {
                f: request_column(f"feature view {view.name!r}", view.request, f, entity_df[f])
                for f in plan.request_fields
            }
            values.update(derive(view, plan.derived, values, request, len(entity_df)))
        for name in wanted:
            computed[view.name, name] = values[name]
        done += len(wanted)
    columns: dict[str, Any] = {}
    for ref in refs:
        if ref.service_expression is None:
            columns[ref.output_name] = computed[ref.view.name, ref.feature]
            continue
        inputs = {r.output_name: computed[r.view.name, r.feature] for r in ref.inputs}
        columns[ref.output_name] = service_values(
            ref.service_expression, inputs, service_request, len(entity_df), columns=True
        )
    # joined at once: a column at a time fragments the frame (a pandas warning past 100)
    return pd.concat([entity_df, pd.DataFrame(columns, index=entity_df.index)], axis=1)


def service_request_columns(refs: Sequence[FeatureRef], entity_df: pd.DataFrame) -> dict[str, Any]:
    """The request fields feature service expressions in `refs` read, from `entity_df`'s
    columns; a `RequestError` naming a missing one."""
    out: dict[str, Any] = {}
    for ref in refs:
        expression = ref.service_expression
        if expression is None:
            continue
        for field in sorted(expression.expression.request_fields):
            if field not in entity_df.columns:
                raise RequestError(
                    f"feature {ref.output_name} needs request field {field!r}: add it as a "
                    "column of entity_df"
                )
            kinds = dict(expression.request)
            out[field] = request_column("its feature service", kinds, field, entity_df[field])
    return out


def epoch_seconds(column: pd.Series) -> Float:
    """Timestamps as float epoch seconds: datetimes (naive = UTC), numbers or ISO strings,
    each exactly the float an event at that time has (`feature_service.times`), so a row
    at an event's own time includes that event, as the online `as_of` does.

    >>> epoch_seconds(pd.Series(["2026-11-01T00:00:00Z", "2026-11-01 00:00:01"])).tolist()
    [1793491200.0, 1793491201.0]
    """
    try:
        return time_column(column, TIMESTAMP_COLUMN)
    except InvalidTime as exc:
        raise RequestError(str(exc)) from None


# --------------------------------------------------------------------------- one view


@dataclass
class ViewEvents:
    """Accepted events of one view, sorted by (entity, event_ts, seq)."""

    code: Int  # entity code
    ts: Float
    seq: Int
    columns: dict[str, npt.NDArray[Any]]
    index: EventIndex  # window bounds by binary search
    entities: pd.Index  # entity id (str) of each code


def view_features(
    view: FeatureView,
    wanted: Sequence[str],
    log: EventLog,
    keys: npt.NDArray[Any],
    t: Float,
    max_offsets: Mapping[int, int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Features `wanted` of `view` for entity ids `keys` (`keys.EntityKey`; None: no
    entity) at times `t` (arrays, row order)."""
    feats = [view.feature(name) for name in wanted]
    events = load_view_events(view, feats, log, max_offsets)
    return features_at(view, feats, events, keys, t, progress)


def features_at(
    view: FeatureView,
    feats: Sequence[Feature],
    events: ViewEvents,
    keys: npt.NDArray[Any],
    t: Float,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Features `feats` of `view` for entity ids `keys` (None: no entity) at times `t`
    (arrays, row order),
    over `events`: those of some entities (`load_view_events`, or a bucket of them);
    a row whose entity has no event there gets the value of no events."""
    order, driver = _locate(events, keys, t)
    n_rows = len(t)
    streams: dict[tuple[str | None, str | None], WindowEvents] = {}
    out: dict[str, Any] = {}
    for j, feature in enumerate(feats):
        window = None if feature.window_s is None else (feature.window_s, feature.hop_s or 0)
        skey = (feature.column, None if feature.where is None else feature.where.text)
        if skey not in streams:
            streams[skey] = _feature_events(view, feature, events)
        sorted_values = driver.values(aggregation_of(feature), streams[skey], window)
        out[feature.name] = _unsort(sorted_values, order, n_rows)
        if progress is not None:
            progress(j + 1)
    return out


def load_view_events(
    view: FeatureView,
    feats: Sequence[Feature],
    log: EventLog,
    max_offsets: Mapping[int, int] | None,
) -> ViewEvents:
    """The events of `view` the features `feats` read, from the offline log (below
    `max_offsets` where given): late ones and those without the view's key left out."""
    source = view.source
    key_cols = view.entity.join_keys
    needed = set(key_cols)
    for f in feats:
        if f.column is not None:
            needed.add(f.column)
        if f.where is not None:
            needed.update(f.where.columns)
    log_events = LogEvents.read(view, log, sorted(needed))
    table = log_events.table
    keep = log_events.taken(view) & ~log_events.late(view) & log_events.below(max_offsets)
    kept = np.flatnonzero(keep)
    where = pa.array(kept)
    codes, uniques = _entity_codes(
        view.entity.key.arrow_ids([table[c].take(where) for c in key_cols])
    )
    ts, seq = log_events.ts[kept], log_events.seq(kept)
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
        c: column_from_arrow(table[c].take(taken), source.column_kinds[c])
        for c in sorted(needed)
        if c not in key_cols or c in _value_columns(feats)
    }
    index = EventIndex(code * (times.size + 1) + rank, times)
    return ViewEvents(code, ts, seq, columns, index, pd.Index(uniques))


def _value_columns(feats: Sequence[Feature]) -> set[str]:
    cols = {f.column for f in feats if f.column is not None}
    for f in feats:
        if f.where is not None:
            cols.update(f.where.columns)
    return cols


def _entity_codes(
    ids: pa.Array | pa.ChunkedArray,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
    """Integer codes of entity ids (`keys.EntityKey.arrow_ids`, as online keys them) and
    the ids. Dictionary-encoded in Arrow (C), so no Python string per event."""
    encoded = ids.dictionary_encode()
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    uniques = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    return codes, uniques


def _locate(
    events: ViewEvents, keys: npt.NDArray[Any], t: Float
) -> tuple[npt.NDArray[np.intp], WindowDriver]:
    """The rows sorted by (entity, t) (`order` maps back to entity_df positions), and
    the window driver over them (entity code -1: unknown to the log)."""
    uniques = events.entities
    series = pd.Series(keys, dtype=object)
    null = series.isna().to_numpy()
    code = np.full(len(series), -1, dtype=np.int64)
    if not null.all():
        code[~null] = uniques.get_indexer(key_texts(series.to_numpy()[~null]))
    order = np.lexsort((t, code))
    return order, WindowDriver(events.index, code[order], t[order])


def _feature_events(view: FeatureView, feature: Feature, events: ViewEvents) -> WindowEvents:
    """The events `feature` aggregates: its `where` passes and its column is not null."""
    index = view.features.index(feature)
    member = view_plan(view).where_mask(index, events.columns, events.ts.size)
    column = None if feature.column is None else events.columns[feature.column]
    kind = None if feature.column is None else view.source.column_kinds[feature.column]
    return WindowEvents.select(events.code, events.ts, column, kind, member)


def _unsort(values: Any, order: npt.NDArray[np.intp], n: int) -> Any:
    """Values of rows sorted by `order` back in entity_df order (any array type an
    aggregation's windows give: numpy, or a pandas extension array)."""
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = np.arange(n)
    return values.take(inverse)
