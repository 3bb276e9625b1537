"""Reading features from decoded states: each row's windows over its entity's retained
events, by its aggregation (`evaluate`); a row reaching before the retained state is
refused (`OutsideRetentionError`)."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_service.aggregation.base import Aggregation
from feature_service.aggregation.state.events import Events, States
from feature_service.aggregation.state.layout import StateLayout, column_kind
from feature_service.aggregation.state.summary import (
    SummaryPlan,
    summary_of,
    summary_plan,
    window_distinct,
    window_ir,
)
from feature_service.aggregation.values import is_null
from feature_service.aggregation.window_events import (
    EventIndex,
    Float,
    Int,
    WindowDriver,
    WindowEvents,
    gather,
)
from feature_service.aggregation.windows import (
    window_start,
)

SCALAR_EVENTS = 320
"""A one-row evaluation over at most this many events folds them one by one (faster
than the numpy passes of `over_windows` up to ~350 events on this stack)."""
SCALAR_ROWS = 8
"""Up to this many rows, each of few events, are folded row by row (the numpy passes
pay for themselves from ~10 rows on)."""


class OutsideRetentionError(ValueError):
    """The query time reaches before the retained state: the answer would not be exact.
    `horizon`: the compaction horizon of the entity refused for it, if that is why."""

    def __init__(self, message: str, horizon: float | None = None) -> None:
        super().__init__(message)
        self.horizon = horizon


def evaluate(
    layout: StateLayout,
    states: States,
    row_code: npt.ArrayLike,
    row_t: npt.ArrayLike,
    only: Sequence[str] | None = None,
) -> dict[str, list[Any]]:
    """Features (all, or those named in `only`, in layout order) of entity
    ``row_code[r]`` at time ``row_t[r]`` for every row r, as lists of plain values.

    Raises `OutsideRetentionError` when a row's window starts before its entity's
    retained events (or a lifetime feature is asked about a time before its base).
    """
    codes = np.asarray(row_code, dtype=np.int64)
    times = np.asarray(row_t, dtype=np.float64)
    if codes.shape != times.shape or codes.ndim != 1:
        raise ValueError("row_code and row_t must be 1-d arrays of one length")
    if not np.all(np.isfinite(times)):
        raise ValueError("query times must be finite")
    wanted = range(len(layout.features)) if only is None else _indexes(layout, only)
    if codes.size == 1 and len(states.events) <= SCALAR_EVENTS:
        return _evaluate_one(layout, states, int(codes[0]), float(times[0]), wanted)
    if 0 < codes.size <= SCALAR_ROWS:
        sizes = np.bincount(states.events.code, minlength=len(states.metas))
        if int(sizes[codes].max()) <= SCALAR_EVENTS:
            rows = [
                _evaluate_one(layout, states, c, r_t, wanted)
                for c, r_t in zip(codes.tolist(), times.tolist(), strict=True)
            ]
            return {name: [row[name][0] for row in rows] for name in rows[0]}
    order = np.lexsort((times, codes))  # rows by (entity, t): the algebra's cheapest order
    in_order = bool((order == np.arange(order.size)).all())  # a lookup's rows usually are
    codes, t = codes[order], times[order]
    ev = states.events
    driver = WindowDriver(EventIndex.of(ev.code, ev.ts), codes, t)
    start, hi = driver.bounds(None)
    cutoff = (
        layout.cutoffs(
            np.array([np.nan if m is None or m.w is None else m.w for m in states.metas])
        )[codes]
        if states.metas
        else np.full(codes.size, -np.inf)
    )
    horizon = (
        np.array([-np.inf if m is None or m.horizon is None else m.horizon for m in states.metas])[
            codes
        ]
        if states.metas
        else np.full(codes.size, -np.inf)
    )
    before = t < horizon
    if before.any():
        r = int(np.flatnonzero(before)[0])
        raise _horizon_refused(float(t[r]), float(horizon[r]))
    compacted = np.isfinite(horizon)
    head_lo = driver.index.since(codes, horizon) if compacted.any() else start
    heads: dict[tuple[int | None, int], _Head] = {}
    out: dict[str, list[Any]] = {}
    streams: dict[tuple[str | None, int | None, bool], WindowEvents] = {}
    checked: set[tuple[int, int]] = set()
    for i in wanted:
        f = layout.features[i]
        agg = layout.aggs[i]
        based = i in layout.based
        key = (f.column, layout.feature_filter[i], based)
        if key not in streams:
            member = layout.member(i, ev.flags)
            if based:  # witnesses of compacted events are in the base already
                member = member & ~ev.witnesses
            column, kind = None, None
            if f.column is not None:
                column = ev.columns[f.column]
                kind = column_kind(layout, f.column, column)
            streams[key] = WindowEvents.select(ev.code, ev.ts, column, kind, member)
        stream = streams[key]
        window = layout.windows[i]
        if window is not None and window not in checked:
            ws = driver.window_starts(window)
            early = ws < cutoff
            if early.any():
                r = int(np.flatnonzero(early)[0])
                raise _window_refused(window[0], float(t[r]), float(ws[r]), float(cutoff[r]))
            checked.add(window)
        below = np.zeros(0, dtype=np.int64)
        if window is not None and compacted.any():
            below = np.flatnonzero(compacted & (driver.window_starts(window) < horizon))
        if below.size == codes.size:  # every row from the kept hops (a busy entity's lookup)
            values = [None] * codes.size
        else:
            values = _plain(driver.values(agg, stream, window))
        if window is not None and below.size:
            ws = driver.window_starts(window)
            g = summary_plan(layout).group_of[i]
            for r in below.tolist():
                head = heads.get((g, r))
                if head is None:  # the features of a group share their head's IR
                    head = heads[(g, r)] = _head_of(layout, i, ev, int(head_lo[r]), int(hi[r]))
                values[r] = _summary_value(
                    layout, i, states, int(codes[r]), float(t[r]), int(ws[r]), head
                )
        if window is None:
            _check_base(states, codes, t)
        if based:
            _with_base(layout, i, states, ev, codes, t, start, hi, values)
        if in_order:
            out[f.name] = values
            continue
        column_out: list[Any] = [None] * len(values)
        for r, v in zip(order.tolist(), values, strict=True):
            column_out[r] = v
        out[f.name] = column_out
    return out


def _evaluate_one(
    layout: StateLayout, states: States, code: int, t: float, wanted: Sequence[int]
) -> dict[str, list[Any]]:
    """`evaluate` of one row over few events: each feature folds its window's events
    with its aggregation's own `fold` (`aggregation.kinds`, the `update` loop in one
    pass), where the numpy passes of `over_windows` would cost more in overhead than
    the work. Windows and their member events are found once and shared by the
    features over them (a lookup at ``t`` at or after the newest event, the usual one,
    reads every window to the end)."""
    ev = states.events
    meta = states.metas[code] if 0 <= code < len(states.metas) else None
    if len(states.metas) == 1:
        ts = ev.ts.tolist()
        end = bisect_right(ts, t)
        mine: Any = slice(0, end)
    else:
        mine = np.flatnonzero(ev.code == code)
        ts = ev.ts[mine].tolist()
        end = bisect_right(ts, t)
        mine = mine[:end]
    ts = ts[:end]
    seq = ev.seq[mine].tolist()
    flags = ev.flags[mine].tolist()
    witnesses = ev.witnesses[mine].tolist()
    columns = {c: _plain(v[mine]) for c, v in ev.columns.items()}
    cutoff = -math.inf if meta is None or meta.w is None else float(layout.cutoff(meta.w))
    horizon = -math.inf if meta is None or meta.horizon is None else meta.horizon
    if t < horizon:
        raise _horizon_refused(t, horizon)
    head_lo = bisect_left(ts, horizon) if horizon > -math.inf else 0
    starts: dict[tuple[int, int], tuple[int, float]] = {}  # window -> its first event
    members: dict[tuple[int | None, bool], list[int]] = {}  # (filter, based) -> events
    picked: dict[tuple[Any, ...], tuple[list[float], list[int], list[Any] | None]] = {}
    everything = list(range(end))
    out: dict[str, list[Any]] = {}
    for i in wanted:
        name, agg, window, k, column, base_at = layout.folds[i]
        based = base_at >= 0
        lo, ws = 0, -math.inf
        if window is None:
            if meta is not None and meta.base_hi is not None and t < meta.base_hi:
                raise _lifetime_refused(t, meta.base_hi)
        elif window in starts:
            lo, ws = starts[window]
        else:
            ws = window_start(t, *window)
            if ws < cutoff:
                raise _window_refused(window[0], t, ws, cutoff)
            # below the horizon: the kept hops, then the head's events
            lo = head_lo if ws < horizon else bisect_left(ts, ws)
            starts[window] = (lo, ws)
        chosen = members.get((k, based))
        if chosen is None:
            chosen = members[(k, based)] = (
                everything
                if k is None and not (based and any(witnesses))
                else [
                    j
                    for j in everything
                    if (k is None or flags[j][k]) and not (based and witnesses[j])
                ]
            )
        first = bisect_left(chosen, lo)
        key = (k, based, column, first)
        events = picked.get(key)
        if events is None:
            values = None if column is None else columns[column]
            if chosen is everything:  # every event from `first` on: slices, no gathering
                events = (ts[first:], seq[first:], None if values is None else values[first:])
            else:
                sel = chosen[first:]
                events = (
                    [ts[j] for j in sel],
                    [seq[j] for j in sel],
                    None if values is None else [values[j] for j in sel],
                )
            picked[key] = events
        if window is not None and ws < horizon:
            value = _summary_value(
                layout, i, states, code, t, int(ws), _Head.of(agg, *events, summary_plan(layout), i)
            )
        else:
            ir = agg.fold(*events)
            if based and meta is not None and meta.base:
                ir = agg.merge(meta.base[base_at], ir)
            value = agg.finalize(ir, t)
        out[name] = [None if isinstance(value, float) and value != value else value]
    return out


class _Head(NamedTuple):
    """What a compacted entity's head gives a window starting below its horizon: the IR
    of its events from the horizon to ``t``, or (a ``distinct`` group) their values."""

    ir: Any
    values: list[Any] | None

    @classmethod
    def of(
        cls,
        agg: Aggregation,
        ts: Sequence[float],
        seq: Sequence[int],
        values: Sequence[Any] | None,
        plan: SummaryPlan,
        i: int,
    ) -> _Head:
        g = plan.group_of[i]
        assert g is not None
        if plan.groups[g].form == "distinct":
            return cls(None, [v for v in values or () if not is_null(v)])
        return cls(agg.fold(ts, seq, values), None)


def _head_of(layout: StateLayout, i: int, ev: Events, a: int, b: int) -> _Head:
    """`_Head` of feature `i` over view events ``[a, b)`` (witnesses left out), its IR
    by the kind's vectorised `grouped`."""
    f = layout.features[i]
    take = np.flatnonzero(layout.member(i, ev.flags[a:b]) & ~ev.witnesses[a:b]) + a
    values = None if f.column is None else ev.columns[f.column][take]
    plan = summary_plan(layout)
    g = plan.group_of[i]
    assert g is not None
    if plan.groups[g].form == "distinct":
        return _Head(None, [v for v in _plain(values) if v is not None])
    agg = layout.aggs[i]
    zeros = np.zeros(take.size, dtype=np.int64)
    return _Head(agg.grouped(ev.ts[take], ev.seq[take], values, zeros, 1)[0], None)


def _summary_value(
    layout: StateLayout,
    i: int,
    states: States,
    code: int,
    t: float,
    start: int,
    head: _Head,
) -> Any:
    """Windowed feature `i` of compacted entity `code` at `t`, its window starting at
    `start` below the horizon: the kept hops from `start` merged with `head`, the
    feature's events from the horizon to `t`."""
    plan = summary_plan(layout)
    g = plan.group_of[i]
    meta = states.metas[code]
    assert g is not None and meta is not None
    kept = summary_of(layout, meta)
    assert kept is not None
    group, agg = plan.groups[g], layout.aggs[i]
    if head.values is not None:
        return agg.of_distinct(window_distinct(kept[g], start, head.values), t)
    return agg.finalize(agg.merge(window_ir(group, kept[g], start), head.ir), t)


def _indexes(layout: StateLayout, only: Sequence[str]) -> list[int]:
    names = set(only)
    unknown = names - set(layout.names)
    if unknown:
        raise ValueError(f"unknown features {sorted(unknown)}")
    return [i for i, name in enumerate(layout.names) if name in names]


def _plain(values: Any) -> list[Any]:
    """A column of results as plain Python values, nulls (NaN, NA) as None."""
    if isinstance(values, pd.api.extensions.ExtensionArray):
        return [None if v is pd.NA else v for v in values.tolist()]
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        out: list[Any] = arr.tolist()
        return [None if v != v else v for v in out]
    if arr.dtype.kind == "O":
        return [None if v is None or (isinstance(v, float) and v != v) else v for v in arr]
    result: list[Any] = arr.tolist()
    return result


def _check_base(states: States, codes: Int, t: Float) -> None:
    """Lifetime values are exact at times at or after every compacted event."""
    for r, c in enumerate(codes.tolist()):
        meta = states.metas[c]
        if meta is not None and meta.base_hi is not None and t[r] < meta.base_hi:
            raise _lifetime_refused(float(t[r]), meta.base_hi)


def _window_refused(window_s: int, t: float, ws: float, cutoff: float) -> OutsideRetentionError:
    return OutsideRetentionError(
        f"the {window_s} s window at t={t} starts at {ws}, before the retained state "
        f"(cutoff {cutoff})"
    )


def _horizon_refused(t: float, horizon: float) -> OutsideRetentionError:
    return OutsideRetentionError(
        f"t={t} is before {horizon}, the compaction horizon of this busy entity: its "
        "online state keeps per-hop aggregates below it, exact at or after the horizon "
        "only; training sets (get-historical-features) are exact at any time",
        horizon,
    )


def _lifetime_refused(t: float, base_hi: float) -> OutsideRetentionError:
    return OutsideRetentionError(
        f"lifetime features at t={t} are before the retained state "
        f"(events up to {base_hi} are compacted)"
    )


def _with_base(
    layout: StateLayout,
    i: int,
    states: States,
    ev: Events,
    codes: Int,
    t: Float,
    start: Int,
    hi: Int,
    values: list[Any],
) -> None:
    """Lifetime feature `i` of rows whose entity has compacted events: the base IR
    merged with the IR of the row's retained events at or before t."""
    rows = [r for r, c in enumerate(codes.tolist()) if (m := states.metas[c]) and m.base]
    if not rows:
        return
    j = layout.based.index(i)
    agg = layout.aggs[i]
    f = layout.features[i]
    idx = np.asarray(rows, dtype=np.int64)
    pos, starts, nonempty = gather(start[idx], hi[idx])
    group = np.repeat(np.flatnonzero(nonempty), np.diff(np.append(starts, pos.size)))
    take = (
        layout.member(i, ev.flags[pos]) & ~ev.witnesses[pos]
        if pos.size
        else np.zeros(0, dtype=np.bool_)
    )
    pos, group = pos[take], group[take]
    column = None if f.column is None else ev.columns[f.column][pos]
    irs = agg.grouped(ev.ts[pos], ev.seq[pos], column, group, len(rows))
    for g, r in enumerate(rows):
        meta = states.metas[int(codes[r])]
        assert meta is not None and meta.base is not None
        value = agg.finalize(agg.merge(meta.base[j], irs[g]), float(t[r]))
        values[r] = None if isinstance(value, float) and value != value else value
