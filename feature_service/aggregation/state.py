"""Online state of a feature view (engine v2): each entity's retained events, packed.

What an entity's state holds. Every event of the entity the view takes (not late) with
``ts >= cutoff(w)``, sorted by ``(ts, seq)``, with only what the view's features read:
the event time, the ordering tiebreak ``seq``, one pass flag per distinct `where`
filter (evaluated once, when the event is written), and each aggregated column. Events
below the cutoff are folded into the lifetime features' IRs (the *base*) and dropped.
A feature is evaluated at ``t`` the way training sets evaluate it over the offline log:
the window's events are a range of the sorted events (two binary searches) and the
aggregation's own `Aggregator.over_windows` computes it (`aggregation.window_events`),
so online values and training sets share one implementation by construction.

Why events and not tiles. The window semantics (``floor(t - W, h) <= ts <= t`` at any
``t`` within one longest window of the watermark, DESIGN.md) need every retained
event's own time: a tile state must keep the raw events anyway, and the tiles on top
of them (one per level per slot, as JSON) were 80-90% of the bytes and of the write
cost. Reads cost O(events in the windows read), vectorised over all the entities of a
request; a view with very hot entities (thousands of events per window) would want
per-hop summaries on top, as the next step.

Compaction. With ``w`` the newest watermark the state was written at and ``C`` the
coarsest hop, ``cutoff(w) = floor((w - retention_s) / C) * C`` (`StateLayout.cutoff`):
an event below it is folded into the base (lifetime features) and dropped. A window
starting before the cutoff, or a lifetime feature at a time before the newest event in
the base, would not be exact: `evaluate` raises `OutsideRetentionError` instead. Events
of a lagging partition that arrive below an entity's cutoff go straight to the base,
so nothing is lost to the lifetime features.

The encoding (the contract between the worker, the backfill and the readers; one Redis
string per (view, entity), `online.redis_layout`):

=========  ==================================================================
bytes      content
=========  ==================================================================
0..19      the state's version, 20 ASCII digits (writers compare-and-set on it)
20..21     ``F2``: this format
22..29     two little-endian uint32: ``n`` events, ``m`` header bytes
30..       the header, ``m`` bytes of JSON: ``v`` layout fingerprint, ``w``
           watermark, ``l`` newest event time, ``b`` base IRs (lifetime features
           in order), ``bh`` newest time folded into the base, ``o`` per
           ``topic:partition`` the next offset whose events the state holds,
           ``bf`` set by a backfill, ``c`` per column of strings, ints or bools
           the entity's dictionary: its distinct values, as JSON
then       ``n`` packed records (`StateLayout.record`): ``ts`` float64, ``seq``
           int64, ``pin`` uint8 (a witness, see Compaction), one uint8 per
           filter, one float64 per float/timestamp column, one uint32 per
           dictionary column (the value's index in the dictionary, 2**32-1: null)
=========  ==================================================================

A blob is decoded with one `numpy.frombuffer` and one `orjson.loads`; many blobs are
decoded, merged and encoded together (`decode`, `write`), so a flush costs a few numpy
passes over all its entities plus a few microseconds per entity.

>>> from feature_service.aggregation.spec import FeatureSpec
>>> layout = StateLayout([FeatureSpec("n_1h", "count", window_s=3600),
...                       FeatureSpec("total", "sum", "amount")], {"amount": "float"})
>>> state = EntityState(layout)
>>> state.add(1000.5, 0, {"amount": 2.0}), state.add(1100.0, 1, {"amount": 3.0})
(True, True)
>>> state.evaluate(1100.0)
{'n_1h': 2, 'total': 5.0}
>>> state.evaluate(5000.0)
{'n_1h': 0, 'total': 5.0}
>>> EntityState.from_bytes(layout, state.to_bytes()).evaluate(1050.0)
{'n_1h': 1, 'total': 2.0}
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import pyarrow as pa

from feature_service.aggregation.algebra import AGGREGATORS, IR, Aggregator
from feature_service.aggregation.spec import FeatureLike, check_feature
from feature_service.aggregation.values import as_float_array, non_null_mask
from feature_service.aggregation.window_events import EventIndex, WindowEvents, gather
from feature_service.aggregation.windows import (
    check_levels,
    default_hop,
    tile_start,
    tile_starts,
    window_start,
    window_starts,
)

__all__ = [
    "EntityState",
    "Events",
    "LayoutMismatchError",
    "Meta",
    "OutsideRetentionError",
    "StaleFormatError",
    "StateLayout",
    "States",
    "decode",
    "evaluate",
    "write",
]

MAGIC = b"F2"
VERSION_DIGITS = 20
_COUNTS = struct.Struct("<II")
_HEAD = VERSION_DIGITS + len(MAGIC) + _COUNTS.size
WITNESSED = frozenset({"first", "last", "time_since_last", "min", "max", "count_distinct"})
"""Lifetime aggregations whose value over compacted events a few of those events give:
the first, the last, the smallest, the largest, one per distinct value."""
BINARY_KINDS = frozenset({"float", "timestamp"})
"""Schema types stored packed as float64 (NaN: null); others go to the JSON header."""
SCALAR_EVENTS = 320
"""A one-row evaluation over at most this many events folds them one by one (faster
than the numpy passes of `over_windows` up to ~350 events on this stack)."""
SCALAR_ROWS = 8
"""Up to this many rows, each of few events, are folded row by row (the numpy passes
pay for themselves from ~10 rows on)."""
NULL_CODE = 0xFFFFFFFF
"""The dictionary index of a null value."""
LIFETIME_ONLY_LEVELS: tuple[int, ...] = (60, 3600)

Int = npt.NDArray[np.int64]
Float = npt.NDArray[np.float64]


class OutsideRetentionError(ValueError):
    """The query time reaches before the retained state: the answer would not be exact."""


class LayoutMismatchError(ValueError):
    """A state was written by another layout of the view (features, filters, order)."""


class StaleFormatError(ValueError):
    """A stored value is not in this format (e.g. written before engine v2)."""


def _filter_key(feature: FeatureLike) -> Hashable | None:
    where = getattr(feature, "where", None)
    if where is None:
        return None
    return getattr(where, "text", where)


class StateLayout:
    """What a view's state stores and how it is evaluated: built once per view.

    `features` are `FeatureSpec`s or the registry's `Feature`s; `kinds` maps columns to
    their schema type (columns of type float/timestamp are packed as float64; others,
    and columns without a kind, are kept as JSON values). `retention_s` (default: the
    longest window) is how far behind the watermark events are kept.

    >>> from feature_service.aggregation.spec import FeatureSpec
    >>> layout = StateLayout([FeatureSpec("s", "sum", "x", 3600)], {"x": "float"})
    >>> layout.record.names, layout.coarsest, layout.retention_s
    (('ts', 'seq', 'pin', 'x'), 60, 3600)
    """

    def __init__(
        self,
        features: Sequence[FeatureLike],
        kinds: Mapping[str, str] | None = None,
        *,
        retention_s: int | None = None,
    ) -> None:
        if not features:
            raise ValueError("a layout needs at least one feature")
        self.features: tuple[FeatureLike, ...] = tuple(features)
        self.names: tuple[str, ...] = tuple(f.name for f in self.features)
        if len(set(self.names)) != len(self.names):
            raise ValueError("feature names must be unique within a view")
        for f in self.features:
            check_feature(f)
        self.aggs: tuple[Aggregator, ...] = tuple(AGGREGATORS[f.aggregation] for f in features)
        self.windows: tuple[tuple[int, int] | None, ...] = tuple(
            None
            if f.window_s is None
            else (f.window_s, f.hop_s if f.hop_s is not None else default_hop(f.window_s))
            for f in self.features
        )
        hops = {w[1] for w in self.windows if w is not None}
        self.levels: tuple[int, ...] = check_levels(hops or LIFETIME_ONLY_LEVELS)
        self.coarsest = self.levels[-1]
        self.max_window: int = max((w[0] for w in self.windows if w is not None), default=0)
        retention = self.max_window if retention_s is None else retention_s
        if not isinstance(retention, int) or retention < self.max_window:
            raise ValueError(
                f"retention_s must be a whole number of seconds >= the longest window "
                f"({self.max_window}), not {retention!r}"
            )
        self.retention_s: int = retention
        self.lifetime: tuple[int, ...] = tuple(i for i, w in enumerate(self.windows) if w is None)
        self.pinned: tuple[int, ...] = tuple(
            i for i in self.lifetime if self.features[i].aggregation in WITNESSED
        )
        """Lifetime features whose compacted events are represented by witnesses."""
        self.based: tuple[int, ...] = tuple(i for i in self.lifetime if i not in self.pinned)
        """Lifetime features whose compacted events are folded into the base IRs."""

        filters: list[Hashable] = []
        feature_filter: list[int | None] = []
        for f in self.features:
            key = _filter_key(f)
            if key is None:
                feature_filter.append(None)
                continue
            if key not in filters:
                filters.append(key)
            feature_filter.append(filters.index(key))
        self.feature_filter: tuple[int | None, ...] = tuple(feature_filter)
        """Index of each feature's `where` among the view's distinct filters (None: none)."""
        self.folds: tuple[_Fold, ...] = tuple(
            _Fold(
                f.name,
                self.aggs[i],
                self.windows[i],
                feature_filter[i],
                f.column,
                self.based.index(i) if i in self.based else -1,
            )
            for i, f in enumerate(self.features)
        )
        """What the one-entity evaluation reads of each feature, looked up once."""
        self.filter_feature: tuple[int, ...] = tuple(
            feature_filter.index(k) for k in range(len(filters))
        )
        """First feature of each filter: its column of `passes` is the filter's."""
        self.takes_all = any(k is None for k in feature_filter)
        """Some feature has no filter: every event is kept."""

        self.columns: tuple[str, ...] = tuple(
            sorted({f.column for f in self.features if f.column is not None})
        )
        given = dict(kinds or {})
        self.kinds: dict[str, str | None] = {c: given.get(c) for c in self.columns}
        self.binary: tuple[str, ...] = tuple(
            c for c in self.columns if given.get(c) in BINARY_KINDS
        )
        self.json_columns: tuple[str, ...] = tuple(c for c in self.columns if c not in self.binary)
        self.record = np.dtype(
            [
                ("ts", "<f8"),
                ("seq", "<i8"),
                ("pin", "u1"),
                *[(f"w{k}", "u1") for k in range(len(filters))],
                *[(c, "<f8") for c in self.binary],
                *[(f"d{j}", "<u4") for j in range(len(self.json_columns))],
            ]
        )
        self.filter_fields = tuple(f"w{k}" for k in range(len(filters)))
        self.code_fields = tuple(f"d{j}" for j in range(len(self.json_columns)))
        description = [
            [f.name, f.aggregation, f.column, *(w or (None, None)), k]
            for f, w, k in zip(self.features, self.windows, feature_filter, strict=True)
        ]
        digest = hashlib.sha1(
            json.dumps(["F2", description, self.binary]).encode(), usedforsecurity=False
        )
        self.fingerprint: str = digest.hexdigest()[:16]

    @property
    def n_filters(self) -> int:
        return len(self.filter_feature)

    def cutoff(self, watermark: float) -> int:
        """Events below this time are folded into the base once the state is at `watermark`."""
        return tile_start(watermark - self.retention_s, self.coarsest)

    def cutoffs(self, watermarks: Float) -> Float:
        """`cutoff` of many watermarks (-inf for none)."""
        out = np.full(watermarks.shape, -np.inf)
        has = np.isfinite(watermarks)
        if has.any():
            out[has] = tile_starts(watermarks[has] - self.retention_s, self.coarsest)
        return out

    def is_late(self, ts: float, watermark: float | None) -> bool:
        """Whether an event at `ts` is refused by a state compacted at `watermark`."""
        return watermark is not None and ts < watermark - self.retention_s

    def filter_flags(self, passes: npt.ArrayLike | None, n: int) -> npt.NDArray[np.bool_]:
        """The ``(n, filters)`` pass flags from an ``(n, features)`` matrix of `where`
        results (None: every event passes)."""
        if passes is None:
            return np.ones((n, self.n_filters), dtype=np.bool_)
        per_feature = np.asarray(passes, dtype=np.bool_).reshape(n, len(self.features))
        return per_feature[:, list(self.filter_feature)]

    def member(self, feature: int, flags: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """Which events (given their filter flags) feature number `feature` takes."""
        k = self.feature_filter[feature]
        if k is None:
            return np.ones(flags.shape[0], dtype=np.bool_)
        return flags[:, k]


# --------------------------------------------------------------------------- containers


class _Fold(NamedTuple):
    """What the one-entity evaluation reads of a feature (`StateLayout.folds`)."""

    name: str
    agg: Aggregator
    window: tuple[int, int] | None
    filter: int | None  # `StateLayout.feature_filter`
    column: str | None
    base_at: int  # its index in the base IRs (-1: not in `StateLayout.based`)


@dataclass
class Meta:
    """An entity's state apart from its events."""

    version: int = 0
    w: float | None = None
    last: float | None = None
    base: list[IR] | None = None
    base_hi: float | None = None
    applied: dict[str, int] = field(default_factory=dict)
    backfilled: bool = False


@dataclass
class Events:
    """Events of many entities: ``code`` is each event's entity (an index)."""

    code: Int
    ts: Float
    seq: Int
    flags: npt.NDArray[np.bool_]  # (n, filters)
    columns: dict[str, npt.NDArray[Any]]
    pin: npt.NDArray[np.bool_] | None = None  # a compacted event kept as a witness

    def __len__(self) -> int:
        return int(self.ts.size)

    @property
    def pins(self) -> npt.NDArray[np.bool_]:
        return np.zeros(self.ts.size, dtype=np.bool_) if self.pin is None else self.pin

    def take(self, idx: npt.NDArray[Any]) -> Events:
        return Events(
            self.code[idx],
            self.ts[idx],
            self.seq[idx],
            self.flags[idx],
            {c: v[idx] for c, v in self.columns.items()},
            None if self.pin is None else self.pin[idx],
        )

    @classmethod
    def concat(cls, layout: StateLayout, pieces: Sequence[Events]) -> Events:
        """The events of `pieces` end to end (no pieces: an empty `Events`). Empty pieces
        are left out; one piece left is returned as it is (its columns' types too)."""
        if not pieces:
            return _empty_events(layout)
        full = [p for p in pieces if len(p)]
        if len(full) <= 1:
            return full[0] if full else pieces[0]
        pieces = full
        return cls(
            np.concatenate([p.code for p in pieces]),
            np.concatenate([p.ts for p in pieces]),
            np.concatenate([p.seq for p in pieces]),
            np.concatenate([p.flags for p in pieces]),
            {c: np.concatenate([p.columns[c] for p in pieces]) for c in layout.columns},
            None
            if all(p.pin is None for p in pieces)
            else np.concatenate([p.pins for p in pieces]),
        )

    @classmethod
    def of(
        cls,
        layout: StateLayout,
        code: npt.ArrayLike,
        ts: npt.ArrayLike,
        seq: npt.ArrayLike,
        columns: Mapping[str, npt.ArrayLike],
        passes: npt.ArrayLike | None = None,
    ) -> Events:
        """Events from arrays: `columns` holds (at least) the layout's columns, absent
        ones are null; `passes` is the ``(n, features)`` matrix of `where` results."""
        ts_a = np.asarray(ts, dtype=np.float64)
        n = ts_a.size
        cols = {}
        for c in layout.columns:
            if c in columns:
                arr = np.asarray(columns[c])
                if arr.shape != (n,):
                    raise ValueError(f"column {c!r} must have one value per event")
            else:
                arr = np.full(n, None, dtype=object)
            cols[c] = _stored_column(arr, c in layout.binary)
        return cls(
            np.asarray(code, dtype=np.int64).reshape(n),
            ts_a,
            np.asarray(seq, dtype=np.int64).reshape(n),
            layout.filter_flags(passes, n),
            cols,
        )


def _stored_column(values: npt.NDArray[Any], binary: bool) -> npt.NDArray[Any]:
    if binary:
        if values.dtype.kind == "O":
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        return values.astype(np.float64, copy=False)
    return values if values.dtype.kind == "O" else values.astype(object)


def _empty_events(layout: StateLayout) -> Events:
    return Events.of(layout, [], [], [], {})


@dataclass
class States:
    """Decoded states of many entities: `metas[i]` is None where entity i has none;
    `events` are sorted by (code, ts, seq)."""

    metas: list[Meta | None]
    events: Events
    words: dict[str, npt.NDArray[Any]] | None = None
    """With `decode(coded=True)`: per JSON column the distinct values of each entity end
    to end (plus a last null slot), and `events.columns[c]` indexes them."""


# --------------------------------------------------------------------------- encoding


def decode(layout: StateLayout, blobs: Sequence[bytes | None], coded: bool = False) -> States:
    """The states of many entities from their stored values (None: no state).

    `coded` (the writer's way): the values of JSON columns are not built; each event
    holds its value's index into `States.words` instead."""
    metas: list[Meta | None] = []
    records: list[bytes] = []
    counts: list[int] = []
    dictionaries: list[list[Any]] = [[] for _ in layout.json_columns]
    offsets: list[list[int]] = [[] for _ in layout.json_columns]
    size = layout.record.itemsize
    magic_at = slice(VERSION_DIGITS, VERSION_DIGITS + len(MAGIC))
    for blob in blobs:
        if blob is None:
            metas.append(None)
            counts.append(0)
            continue
        if blob[magic_at] != MAGIC:
            raise StaleFormatError("the stored state is not in the format of engine v2")
        n, m = _COUNTS.unpack_from(blob, VERSION_DIGITS + len(MAGIC))
        header = orjson.loads(blob[_HEAD : _HEAD + m])
        if header["v"] != layout.fingerprint:
            raise LayoutMismatchError(
                f"state written by layout {header['v']}, this layout is {layout.fingerprint}"
            )
        metas.append(
            Meta(
                int(blob[:VERSION_DIGITS]),
                header.get("w"),
                header.get("l"),
                header.get("b"),
                header.get("bh"),
                header.get("o", {}),
                bool(header.get("bf")),
            )
        )
        counts.append(n)
        if n:
            records.append(blob[_HEAD + m : _HEAD + m + n * size])
            for j, words in enumerate(header["c"]):
                offsets[j].append(len(dictionaries[j]))
                dictionaries[j].extend(words)
    if not records:
        empty = _empty_events(layout)
        if coded:
            for c in layout.json_columns:
                empty.columns[c] = np.zeros(0, dtype=np.int64)
            words = {c: np.full(1, None, dtype=object) for c in layout.json_columns}
            return States(metas, empty, words)
        return States(metas, empty)
    rec = np.frombuffer(b"".join(records), dtype=layout.record)  # one pass for all
    code = np.repeat(np.arange(len(metas), dtype=np.int64), counts)
    flags = (
        np.stack([rec[f] for f in layout.filter_fields], axis=1).astype(np.bool_)
        if layout.filter_fields
        else np.ones((rec.size, 0), dtype=np.bool_)
    )
    columns: dict[str, npt.NDArray[Any]] = {c: rec[c].copy() for c in layout.binary}
    nonzero = [k for k in counts if k]
    all_words: dict[str, npt.NDArray[Any]] = {}
    for j, c in enumerate(layout.json_columns):
        words = np.empty(len(dictionaries[j]) + 1, dtype=object)  # last: null
        words[:-1] = dictionaries[j]
        base = np.repeat(np.asarray(offsets[j], dtype=np.int64), nonzero)
        local = rec[layout.code_fields[j]].astype(np.int64)
        index = np.where(local == NULL_CODE, words.size - 1, base + local)
        all_words[c] = words
        columns[c] = index if coded else words[index]
    pin = rec["pin"].astype(np.bool_)
    events = Events(code, rec["ts"].copy(), rec["seq"].copy(), flags, columns, pin)
    return States(metas, events, all_words if coded else None)


def _encode_all(
    layout: StateLayout,
    metas: Sequence[Meta],
    events: Events,
    uniques: Mapping[str, npt.NDArray[Any]],
) -> list[bytes]:
    """Blobs of entities 0..len(metas)-1 (`events` sorted by code, ts, seq; JSON
    columns as codes of `uniques`, -1 null)."""
    n = len(events)
    rec = np.empty(n, dtype=layout.record)
    rec["ts"] = events.ts
    rec["seq"] = events.seq
    rec["pin"] = events.pins
    for k, name in enumerate(layout.filter_fields):
        rec[name] = events.flags[:, k]
    for c in layout.binary:
        rec[c] = events.columns[c]
    size = layout.record.itemsize
    bounds_a = np.searchsorted(events.code, np.arange(len(metas) + 1))
    words_of: list[tuple[list[Any], list[int]]] = []
    for j, c in enumerate(layout.json_columns):
        local, words, starts = _dictionary(events.code, events.columns[c], uniques[c], len(metas))
        rec[layout.code_fields[j]] = local
        words_of.append((words, starts))
    raw = rec.tobytes()
    bounds = bounds_a.tolist()
    out = []
    for i, meta in enumerate(metas):
        a, b = bounds[i], bounds[i + 1]
        header: dict[str, Any] = {"v": layout.fingerprint, "l": meta.last}
        if meta.w is not None:
            header["w"] = meta.w
        if meta.base is not None:
            header["b"] = meta.base
        if meta.base_hi is not None:
            header["bh"] = meta.base_hi
        if meta.applied:
            header["o"] = meta.applied
        if meta.backfilled:
            header["bf"] = 1
        header["c"] = [words[starts[i] : starts[i + 1]] for words, starts in words_of]
        head = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
        out.append(
            b"%020d" % meta.version
            + MAGIC
            + _COUNTS.pack(b - a, len(head))
            + head
            + raw[a * size : b * size]
        )
    return out


def _dictionary(
    code: Int, gv: Int, uniques: npt.NDArray[Any], m: int
) -> tuple[npt.NDArray[np.uint32], list[Any], list[int]]:
    """Per entity, the distinct values of a JSON column (its dictionary) and each
    event's index in its entity's dictionary (`NULL_CODE`: null): the distinct values
    of all entities, end to end, and where each entity's begin. `gv`: each event's
    value as a code of `uniques` (-1: null)."""
    local = np.full(gv.size, NULL_CODE, dtype=np.uint32)
    present = gv >= 0
    g = len(uniques) + 1
    key = code[present] * g + gv[present]
    pairs, inverse = np.unique(key, return_inverse=True)
    pair_code = pairs // g
    starts = np.searchsorted(pair_code, np.arange(m + 1))
    local[present] = (inverse.reshape(-1) - starts[code[present]]).astype(np.uint32)
    words = uniques[pairs % g].tolist()
    return local, words, starts.tolist()


def version_of(blob: bytes | None) -> str:
    """The version prefix of a stored state ('' for none), as writers compare it."""
    return "" if blob is None else blob[:VERSION_DIGITS].decode()


# --------------------------------------------------------------------------- writing


def write(
    layout: StateLayout,
    states: States,
    new: Events,
    watermark: Float,
    last: Float,
    applied: Sequence[Mapping[str, int]] | None = None,
    backfilled: bool = False,
) -> list[bytes]:
    """New stored values of every entity of `states` with events `new` added: the one
    state writer (merge, compact, encode) of the worker and the backfill.

    `new.code` indexes `states.metas`; `watermark[i]` is what entity i compacts at (at
    least its stored ``w``; -inf: none), `last[i]` its newest new event time (NaN:
    none), `applied[i]` offset marks to set. Late events must be left out by the caller
    (`plan.ViewPlan.late`); events below an entity's cutoff go to its base. `states`
    is consumed (its metas are updated in place).
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
    drop = events.ts < cutoff[events.code]
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
    return _encode_all(layout, metas, events, uniques)


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
        Events(old.code, old.ts, old.seq, old.flags, old_cols, old.pin),
        Events(new.code, new.ts, new.seq, new.flags, new_cols, new.pin),
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
    pinned = events.pins
    if layout.based:  # events pinned before were folded then already
        dropped = events.take(np.flatnonzero(drop & ~pinned))
        _fold_into_base(layout, metas, _valued(layout, dropped, uniques))
    witness = np.zeros(len(events), dtype=np.bool_)
    for i in layout.pinned:
        witness |= _witnesses(layout, i, events, drop, uniques)
    keep = ~drop | witness
    out = events.take(np.flatnonzero(keep))
    out.pin = witness[keep]
    return out


def _valued(layout: StateLayout, events: Events, uniques: Mapping[str, Any]) -> Events:
    """`events` with JSON columns as values again (from their codes)."""
    columns = dict(events.columns)
    for c, u in uniques.items():
        columns[c] = _with_null(u)[events.columns[c]]  # code -1: the null slot
    return Events(events.code, events.ts, events.seq, events.flags, columns, events.pin)


def _witnesses(
    layout: StateLayout,
    i: int,
    events: Events,
    drop: npt.NDArray[np.bool_],
    uniques: Mapping[str, npt.NDArray[Any]],
) -> npt.NDArray[np.bool_]:
    """The dropped events that give lifetime feature `i`'s value over all of them, per
    entity: its first, its last, its smallest, its largest, one per distinct value.
    Events are sorted by (entity, ts, seq); JSON columns are codes of `uniques`."""
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
    code = events.code[idx]
    agg = f.aggregation
    if agg in ("first", "last", "time_since_last"):
        edge = np.ones(idx.size, dtype=np.bool_)
        if agg == "first":
            edge[1:] = code[1:] != code[:-1]
        else:
            edge[:-1] = code[1:] != code[:-1]
        out[idx[edge]] = True
        return out
    assert values is not None
    if agg in ("min", "max"):
        x = as_float_array(uniques[f.column or ""][values[idx]] if coded else values[idx])
        order = np.lexsort((x if agg == "min" else -x, code))
        first = np.ones(order.size, dtype=np.bool_)
        first[1:] = code[order][1:] != code[order][:-1]
        out[idx[order[first]]] = True
        return out
    # count_distinct: the first event of each (entity, value)
    if coded:
        picked: Any = uniques[f.column or ""][values[idx]]
        kind = _kind(layout, f.column or "", picked)
        if kind != "string":  # numbers are one value when equal (1 == 1.0)
            picked = as_float_array(picked) + 0.0
    else:
        picked = as_float_array(values[idx]) + 0.0
    vcode = pd.factorize(picked)[0]
    pairs = pd.DataFrame({"e": code, "v": vcode})
    out[idx[~pairs.duplicated().to_numpy()]] = True
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


# --------------------------------------------------------------------------- reading


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
    index = EventIndex.of(ev.code, ev.ts)
    hi = index.upto(codes, t)
    start = index.first(codes)
    cutoff = (
        layout.cutoffs(
            np.array([np.nan if m is None or m.w is None else m.w for m in states.metas])
        )[codes]
        if states.metas
        else np.full(codes.size, -np.inf)
    )
    out: dict[str, list[Any]] = {}
    streams: dict[tuple[str | None, int | None, bool], WindowEvents] = {}
    starts: dict[tuple[int, int], Int] = {}  # first event of each window, per row
    for i in wanted:
        f = layout.features[i]
        agg = layout.aggs[i]
        based = i in layout.based
        key = (f.column, layout.feature_filter[i], based)
        if key not in streams:
            member = layout.member(i, ev.flags)
            if based:  # witnesses of compacted events are in the base already
                member = member & ~ev.pins
            column, kind = None, None
            if f.column is not None:
                column = ev.columns[f.column]
                kind = _kind(layout, f.column, column)
            streams[key] = WindowEvents.select(ev.code, ev.ts, column, kind, member)
        stream = streams[key]
        window = layout.windows[i]
        if window is None:
            lo = start
        elif window in starts:
            lo = starts[window]
        else:
            ws = window_starts(t, *window)
            early = ws < cutoff
            if early.any():
                r = int(np.flatnonzero(early)[0])
                raise _window_refused(window[0], float(t[r]), float(ws[r]), float(cutoff[r]))
            lo = starts[window] = index.since(codes, ws)
        a, b = stream.bounds(lo, hi)
        values = _plain(agg.over_windows(stream, a, b, t, lifetime=window is None))
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
    with its aggregation's own `fold` (`aggregation.algebra`, the `update` loop in one
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
    pins = ev.pins[mine].tolist()
    columns = {c: _plain(v[mine]) for c, v in ev.columns.items()}
    cutoff = -math.inf if meta is None or meta.w is None else float(layout.cutoff(meta.w))
    starts: dict[tuple[int, int], int] = {}  # window -> its first event
    members: dict[tuple[int | None, bool], list[int]] = {}  # (filter, based) -> events
    picked: dict[tuple[Any, ...], tuple[list[float], list[int], list[Any] | None]] = {}
    everything = list(range(end))
    out: dict[str, list[Any]] = {}
    for i in wanted:
        name, agg, window, k, column, base_at = layout.folds[i]
        based = base_at >= 0
        lo = 0
        if window is None:
            if meta is not None and meta.base_hi is not None and t < meta.base_hi:
                raise _lifetime_refused(t, meta.base_hi)
        elif window in starts:
            lo = starts[window]
        else:
            ws = window_start(t, *window)
            if ws < cutoff:
                raise _window_refused(window[0], t, ws, cutoff)
            lo = starts[window] = bisect_left(ts, ws)
        chosen = members.get((k, based))
        if chosen is None:
            chosen = members[(k, based)] = (
                everything
                if k is None and not (based and any(pins))
                else [
                    j for j in everything if (k is None or flags[j][k]) and not (based and pins[j])
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
        ir = agg.fold(*events)
        if based and meta is not None and meta.base:
            ir = agg.merge(meta.base[base_at], ir)
        value = agg.finalize(ir, t)
        out[name] = [None if isinstance(value, float) and value != value else value]
    return out


def _indexes(layout: StateLayout, only: Sequence[str]) -> list[int]:
    names = set(only)
    unknown = names - set(layout.names)
    if unknown:
        raise ValueError(f"unknown features {sorted(unknown)}")
    return [i for i, name in enumerate(layout.names) if name in names]


def _kind(layout: StateLayout, column: str, values: npt.NDArray[Any]) -> str | None:
    kind = layout.kinds.get(column)
    if kind is not None:
        return kind
    if values.dtype.kind == "O" and any(isinstance(v, str) for v in values):
        return "string"
    return None


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
        layout.member(i, ev.flags[pos]) & ~ev.pins[pos] if pos.size else np.zeros(0, dtype=np.bool_)
    )
    pos, group = pos[take], group[take]
    column = None if f.column is None else ev.columns[f.column][pos]
    irs = agg.grouped(ev.ts[pos], ev.seq[pos], column, group, len(rows))
    for g, r in enumerate(rows):
        meta = states.metas[int(codes[r])]
        assert meta is not None and meta.base is not None
        value = agg.finalize(agg.merge(meta.base[j], irs[g]), float(t[r]))
        values[r] = None if isinstance(value, float) and value != value else value


# --------------------------------------------------------------------------- one entity


class EntityState:
    """The state of one entity, for tools and tests: events added one by one, then
    compacted, evaluated and encoded through the same `write` and `evaluate`.

    `add` refuses (returns False) an event older than ``w - retention_s`` of the last
    compaction, as the worker's lateness rule would have.
    """

    def __init__(self, layout: StateLayout, blob: bytes | None = None) -> None:
        self.layout = layout
        self.blob = blob
        self._pending: list[tuple[float, int, Mapping[str, Any], Sequence[bool] | None]] = []

    @classmethod
    def from_bytes(cls, layout: StateLayout, blob: bytes | None) -> EntityState:
        state = cls(layout, blob)
        decode(layout, [blob])  # refuse another layout or format now
        return state

    @property
    def meta(self) -> Meta | None:
        return decode(self.layout, [self._flushed()]).metas[0]

    @property
    def watermark(self) -> float | None:
        meta = self.meta
        return None if meta is None else meta.w

    def add(
        self, ts: float, seq: int, values: Mapping[str, Any], passes: Sequence[bool] | None = None
    ) -> bool:
        if self.layout.is_late(ts, self.watermark):
            return False
        self._pending.append((float(ts), int(seq), dict(values), passes))
        return True

    def compact(self, watermark: float) -> None:
        self._flushed(watermark)

    def _flushed(self, watermark: float = -math.inf) -> bytes | None:
        if not self._pending and watermark == -math.inf:
            return self.blob
        layout = self.layout
        states = decode(layout, [self.blob], coded=True)
        rows = self._pending
        self._pending = []
        n = len(rows)
        passes = None
        if any(p is not None for *_, p in rows):
            passes = [[True] * len(layout.features) if p is None else list(p) for *_, p in rows]
        columns = {}
        for c in layout.columns:
            arr = np.empty(n, dtype=object)
            arr[:] = [r[2].get(c) for r in rows]
            columns[c] = arr
        new = Events.of(
            layout,
            np.zeros(n, dtype=np.int64),
            [r[0] for r in rows],
            [r[1] for r in rows],
            columns,
            passes,
        )
        newest = max((r[0] for r in rows), default=math.nan)
        self.blob = write(layout, states, new, np.array([watermark]), np.array([newest]))[0]
        return self.blob

    def to_bytes(self) -> bytes:
        blob = self._flushed()
        if blob is None:
            blob = write(
                self.layout,
                decode(self.layout, [None]),
                _empty_events(self.layout),
                np.array([-np.inf]),
                np.array([np.nan]),
            )[0]
            self.blob = blob
        return blob

    def evaluate(self, t: float, only: Sequence[str] | None = None) -> dict[str, Any]:
        states = decode(self.layout, [self._flushed()])
        values = evaluate(self.layout, states, np.zeros(1, dtype=np.int64), [float(t)], only)
        return {name: column[0] for name, column in values.items()}
