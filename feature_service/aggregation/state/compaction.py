"""The one state writer of the worker and the backfill: new events merged into the
stored ones, events below the cutoff compacted (folded into the base IRs, or kept as
their aggregation's witnesses), the states encoded (`write`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from feature_service.aggregation.state.events import Events, Meta, States
from feature_service.aggregation.state.format import encode_all
from feature_service.aggregation.state.layout import StateLayout, column_kind
from feature_service.aggregation.state.summary import (
    advance,
    encode_summary,
    summary_of,
    summary_plan,
)
from feature_service.aggregation.values import non_null_mask
from feature_service.aggregation.window_events import Float, Int

HEAD_EVENTS = 1024
"""An entity with more events than this above its horizon is compacted to half of them
(`aggregation.state`, "Bounded state")."""


def write(
    layout: StateLayout,
    states: States,
    new: Events,
    watermark: Float,
    last: Float,
    applied: Sequence[Mapping[str, int]] | None = None,
    backfilled: bool = False,
    budget: int | None = None,
) -> list[bytes]:
    """New stored values of every entity of `states` with events `new` added: the one
    state writer (merge, compact, encode) of the worker and the backfill.

    `new.code` indexes `states.metas`; `watermark[i]` is what entity i compacts at (at
    least its stored ``w``; -inf: none), `last[i]` its newest new event time (NaN:
    none), `applied[i]` offset marks to set. Late events must be left out by the caller
    (`plan.ViewPlan.late`); events below an entity's cutoff go to its base. `states`
    is consumed (its metas are updated in place). `budget` (default `HEAD_EVENTS`): an
    entity with more events above its horizon is compacted (module doc of
    `aggregation.state`).
    """
    metas = [Meta() if meta is None else meta for meta in states.metas]
    if not layout.takes_all and len(new):
        new = new.take(np.flatnonzero(new.flags.any(axis=1)))
    old = states.events
    old, new, uniques = _coded(layout, states, new)
    events = Events.concat(layout, [old, new])
    if len(new):
        order = _merged_order(old, new)
        events = events.take(order)
    stored_w = np.array([-np.inf if meta.w is None else meta.w for meta in metas])
    w = np.maximum(stored_w, np.asarray(watermark, dtype=np.float64))
    cutoff = layout.cutoffs(w)
    horizon = _horizons(metas, events, cutoff, HEAD_EVENTS if budget is None else budget)
    bound = np.where(np.isnan(horizon), cutoff, np.fmax(cutoff, horizon))
    drop = events.ts < bound[events.code]
    _keep_summaries(layout, metas, events, drop, horizon, uniques)
    if drop.any():
        events = _compact(layout, metas, events, drop, uniques)
    last_a = np.asarray(last, dtype=np.float64)
    for i, meta in enumerate(metas):
        meta.version += 1
        if math.isfinite(w[i]):
            meta.w = float(w[i])
        if not math.isnan(last_a[i]):
            meta.last = float(last_a[i]) if meta.last is None else max(meta.last, float(last_a[i]))
        if applied is not None:
            meta.applied.update(applied[i])
        meta.backfilled = meta.backfilled or backfilled
    return encode_all(layout, metas, events, uniques)


def _horizons(metas: list[Meta], events: Events, cutoff: Float, budget: int) -> Float:
    """Each entity's horizon after this write (NaN: not compacted). An entity with more
    than `budget` events at or above its horizon (all its events, uncompacted) keeps
    the newest ``budget // 2`` (and those at the same time as the oldest of them); a
    horizon at or below the cutoff compacts nothing the cutoff does not: the entity
    is uncompacted again."""
    m = len(metas)
    old = np.array([np.nan if meta.horizon is None else meta.horizon for meta in metas])
    if m == 0:
        return old
    above = events.ts >= np.nan_to_num(old, nan=-np.inf)[events.code]
    head = above & ~events.witnesses
    sizes = np.bincount(events.code[head], minlength=m)
    horizon = old.copy()
    keep = max(budget // 2, 1)
    over = np.flatnonzero(sizes > budget)
    starts = np.searchsorted(events.code, over)
    ends = np.searchsorted(events.code, over, side="right")
    for e, a, b in zip(over.tolist(), starts.tolist(), ends.tolist(), strict=True):
        mine = a + np.flatnonzero(head[a:b])
        at = float(events.ts[mine[-keep]])
        horizon[e] = at if np.isnan(horizon[e]) else max(horizon[e], at)
    horizon[horizon <= cutoff] = np.nan
    return horizon


def _keep_summaries(
    layout: StateLayout,
    metas: list[Meta],
    events: Events,
    drop: npt.NDArray[np.bool_],
    horizon: Float,
    uniques: Mapping[str, npt.NDArray[Any]],
) -> None:
    """Fold the events compacted below each compacted entity's horizon into its kept
    hops (`summary.advance`), set its horizon and summary; an entity no longer
    compacted loses both."""
    plan = summary_plan(layout)
    fresh = drop & ~events.witnesses
    was = np.array([meta.horizon is not None for meta in metas], dtype=np.bool_)
    touched = np.flatnonzero(was | ~np.isnan(horizon))
    bounds = np.searchsorted(events.code, touched)
    ends = np.searchsorted(events.code, touched, side="right")
    for e, a, b in zip(touched.tolist(), bounds.tolist(), ends.tolist(), strict=True):
        meta = metas[e]
        h = float(horizon[e])
        if math.isnan(h):
            meta.horizon = meta.summary = meta.kept = None
            continue
        mine = a + np.flatnonzero(fresh[a:b])
        if meta.horizon == h and mine.size == 0:
            continue  # nothing moved: the stored summary stands
        old = summary_of(layout, meta)
        part = _valued(layout, events.take(mine), uniques)
        kept = []
        for g, group in enumerate(plan.groups):
            take = layout.member(group.feature, part.flags)
            values = None if group.column is None else part.columns[group.column][take]
            kept.append(
                advance(group, old[g] if old else None, h, part.ts[take], part.seq[take], values)
            )
        meta.horizon, meta.kept = h, kept
        meta.summary = encode_summary(plan, kept)


def _coded(
    layout: StateLayout, states: States, new: Events
) -> tuple[Events, Events, dict[str, npt.NDArray[Any]]]:
    """Old and new events with JSON columns as codes of one factorization per column
    (-1: null), and the values the codes stand for. Only the old dictionaries and the
    new values are hashed, never each old event's value."""
    old = states.events
    uniques: dict[str, npt.NDArray[Any]] = {}
    if not layout.json_columns:
        return old, new, uniques
    old_cols = dict(old.columns)
    new_cols = dict(new.columns)
    for c in layout.json_columns:
        if states.words is not None:
            words = states.words[c]
            index = old.columns[c]
        else:  # values decoded: they are their own dictionary
            words = _with_null(old.columns[c])
            index = np.arange(len(old), dtype=np.int64)
        both = np.concatenate([words, np.asarray(new.columns[c], dtype=object)])
        gv, u = _factorize(both, layout.kinds.get(c))
        old_cols[c] = gv[: words.size][index]
        new_cols[c] = gv[words.size :]
        uniques[c] = np.asarray(u, dtype=object)
    return (
        Events(old.code, old.ts, old.seq, old.flags, old_cols, old.witness),
        Events(new.code, new.ts, new.seq, new.flags, new_cols, new.witness),
        uniques,
    )


def _with_null(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    out = np.empty(values.size + 1, dtype=object)
    out[:-1] = values
    return out


def _factorize(values: npt.NDArray[Any], kind: str | None) -> tuple[Int, npt.NDArray[Any]]:
    """Codes of `values` (-1: null) and the distinct values; strings are hashed by
    Arrow (C++, no Python object per value), anything else by pandas."""
    if kind == "string":
        encoded = pa.array(values, type=pa.string(), from_pandas=True).dictionary_encode()
        codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        uniques = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
        return codes.astype(np.int64, copy=False), uniques
    gv, u = pd.factorize(values, use_na_sentinel=True)
    return gv.astype(np.int64, copy=False), np.asarray(u, dtype=object)


def _merged_order(old: Events, new: Events) -> Int:
    """The (code, ts, seq) order of `old` then `new` end to end. Events arrive mostly
    in order: a stable sort by entity of the two sorted runs (linear) puts each
    entity's new events after its stored ones, which is the order for every entity
    whose new events all come later; only the others are sorted again."""
    inner = np.lexsort((new.seq, new.ts, new.code))
    n_old = len(old)
    codes = np.concatenate([old.code, new.code[inner]])
    position = np.concatenate([np.arange(n_old), n_old + inner])
    order = position[np.argsort(codes, kind="stable")]  # two sorted runs: a merge
    if not n_old:
        return order
    m = int(max(old.code.max(), new.code.max())) + 1
    last_ts = np.full(m, -np.inf)
    last_seq = np.full(m, np.iinfo(np.int64).min)
    ends = np.flatnonzero(np.append(old.code[1:] != old.code[:-1], True))
    last_ts[old.code[ends]] = old.ts[ends]
    last_seq[old.code[ends]] = old.seq[ends]
    new_code = new.code[inner]
    first = np.flatnonzero(np.insert(new_code[1:] != new_code[:-1], 0, True))
    fc, ft, fs = new_code[first], new.ts[inner][first], new.seq[inner][first]
    later = (ft > last_ts[fc]) | ((ft == last_ts[fc]) & (fs > last_seq[fc]))
    if later.all():
        return order
    all_code = np.concatenate([old.code, new.code])
    redo = np.flatnonzero(np.isin(all_code[order], fc[~later]))  # whole entity blocks
    sub = order[redo]
    all_ts = np.concatenate([old.ts, new.ts])
    all_seq = np.concatenate([old.seq, new.seq])
    order[redo] = sub[np.lexsort((all_seq[sub], all_ts[sub], all_code[sub]))]
    return order


def _compact(
    layout: StateLayout,
    metas: list[Meta],
    events: Events,
    drop: npt.NDArray[np.bool_],
    uniques: Mapping[str, npt.NDArray[Any]],
) -> Events:
    """`events` without those below their entities' cutoffs (`drop`), except the
    witnesses the lifetime features need; the others are folded into the base IRs."""
    m = len(metas)
    hi = np.full(m, -np.inf)
    np.maximum.at(hi, events.code[drop], events.ts[drop])
    for e, top in zip(
        np.flatnonzero(np.isfinite(hi)).tolist(), hi[np.isfinite(hi)].tolist(), strict=True
    ):
        meta = metas[e]
        meta.base_hi = top if meta.base_hi is None else max(meta.base_hi, top)
    witnessed = events.witnesses
    if layout.based:  # witnesses kept before were folded then already
        dropped = events.take(np.flatnonzero(drop & ~witnessed))
        _fold_into_base(layout, metas, _valued(layout, dropped, uniques))
    witness = np.zeros(len(events), dtype=np.bool_)
    for i in layout.witnessed:
        witness |= _witnesses(layout, i, events, drop, uniques)
    keep = ~drop | witness
    out = events.take(np.flatnonzero(keep))
    out.witness = witness[keep]
    return out


def _valued(layout: StateLayout, events: Events, uniques: Mapping[str, Any]) -> Events:
    """`events` with JSON columns as values again (from their codes)."""
    columns = dict(events.columns)
    for c, u in uniques.items():
        columns[c] = _with_null(u)[events.columns[c]]  # code -1: the null slot
    return Events(events.code, events.ts, events.seq, events.flags, columns, events.witness)


def _witnesses(
    layout: StateLayout,
    i: int,
    events: Events,
    drop: npt.NDArray[np.bool_],
    uniques: Mapping[str, npt.NDArray[Any]],
) -> npt.NDArray[np.bool_]:
    """The dropped events that give lifetime feature `i`'s value over all of them, per
    entity, as its aggregation picks them (`Aggregation.witnesses`). Events are sorted
    by (entity, ts, seq); JSON columns are codes of `uniques`."""
    f = layout.features[i]
    member = drop & layout.member(i, events.flags)
    values = None if f.column is None else events.columns[f.column]
    coded = f.column in uniques
    if values is not None:
        member &= (values >= 0) if coded else non_null_mask(values)
    idx = np.flatnonzero(member)
    out = np.zeros(len(events), dtype=np.bool_)
    if idx.size == 0:
        return out
    picked: npt.NDArray[Any] | None = None
    kind = None
    if values is not None:
        picked = uniques[f.column or ""][values[idx]] if coded else values[idx]
        kind = column_kind(layout, f.column or "", picked)
    out[idx[layout.aggs[i].witnesses(events.code[idx], picked, kind)]] = True
    return out


def _fold_into_base(layout: StateLayout, metas: list[Meta], dropped: Events) -> None:
    """Fold compacted events into the base IRs of the `based` lifetime features."""
    m = len(metas)
    entities = np.unique(dropped.code).tolist()
    per_feature = []
    for i in layout.based:
        f = layout.features[i]
        take = layout.member(i, dropped.flags)
        values = None if f.column is None else dropped.columns[f.column][take]
        agg = layout.aggs[i]
        irs = agg.grouped(dropped.ts[take], dropped.seq[take], values, dropped.code[take], m)
        per_feature.append((agg, irs))
    empty = [agg.empty() for agg, _ in per_feature]
    for e in entities:
        meta = metas[e]
        base = meta.base or empty
        meta.base = [agg.merge(b, irs[e]) for (agg, irs), b in zip(per_feature, base, strict=True)]
