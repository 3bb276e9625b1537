"""Exact multi-resolution tile state of one entity of one feature view.

The state is a flat mapping ``field -> JSON value`` that maps 1:1 onto one Redis hash
per (view, entity). With ``g`` the finest level, ``L`` any level, ``F`` the features of
the view in order and ``F*`` its lifetime (window-less) features:

============  ===========================================================================
field         value
============  ===========================================================================
``v``         layout fingerprint: the features, their order and the levels (str)
``w``         watermark of the last compaction (float); absent before the first one
``lo``        a multiple of the coarsest level at or below every retained event (int)
``hi``        latest event time that reached a lifetime feature (float)
``a``         IRs of ``F*`` over every accepted event (the running lifetime totals)
``b``         IRs of ``F*`` over the compacted events, ``ts < cutoff(w)`` (the base)
``t:<L>:<s>`` one IR per *slot* over the events with ``s <= ts < s + L``, every level
``r:<s>``     raw events with ``s <= ts < s + g``, sorted by ``(ts, seq)``, each
              ``[ts, seq, mask, value of column 0, value of column 1, ...]`` where bit k
              of ``mask`` is slot k's `where` and the columns are `TileLayout.columns`
============  ===========================================================================

A slot is what features with the same aggregation state share: the same aggregation
(``std`` and ``var`` share one), column and `where`. ``amount`` summed over 1h, 1d and 7d
is one slot, so tiles store its IR once (`TileLayout.slots`).

Levels are the distinct hops of the windowed features (each must divide the next), or
``(60, 3600)`` for a view of lifetime features only. Tiles are sparse: a tile that no
event reached is absent and reads as empty. Every accepted event updates one tile per
level, its raw bucket, and (if it reaches a lifetime feature) ``a``.

Why evaluation is exact. For a feature with window ``W`` and hop ``h`` at time ``t`` the
window is ``[ws, t]`` with ``ws = floor(t/h)*h - W`` (`windows.window_start`). Split it as
``[ws, floor(t/g)*g)`` plus ``[floor(t/g)*g, t]``. The first part has both ends on the
finest grid, and `windows.cover` tiles it exactly with aligned tiles (climbing to the
coarsest level that fits, running along it, descending: all levels hold every slot,
and each level's tiles are unions of the finer ones because the levels divide each
other). The second part lies inside one finest bucket, whose raw events are filtered by
``ts <= t``. Each event is therefore merged exactly once; the merges are those of the
algebra, so the result equals aggregating the window's events directly. A lifetime
feature at ``t >= hi`` is ``a`` (every event it saw is at or before ``t``); at ``t < hi``
it is ``b`` plus a cover of ``[max(lo, cutoff), floor(t/g)*g)`` plus the raw bucket.

Compaction at watermark ``w`` uses ``cutoff = floor((w - retention_s) / C) * C`` with
``C`` the coarsest level, so no tile straddles it: the coarsest tiles before the cutoff
are merged into ``b`` (lifetime features only) and every tile and raw bucket before it is
dropped. Events with ``ts < w - retention_s`` are late and refused. Any ``t`` with
``t >= w - retention_s + longest window`` has every window start at or after the cutoff,
so it evaluates exactly. Earlier times are answered when still exact and otherwise raise
`OutsideRetentionError` (a window starting before the cutoff; a lifetime feature at a
time before both the cutoff and its latest event): never an inexact value.

Reading: `TileLayout.plan` lists the fields needed at ``t`` (one HMGET);
`TileLayout.evaluate_fields` computes the features from that partial mapping and raises
`NeedMoreFields` in the one case the plan cannot foresee (a lifetime feature asked about
a time before its latest event), naming the extra fields; `TileLayout.read` does the loop.
Writing: `TileLayout.batch_fields` turns a batch of events of many entities into per-entity
field deltas in one vectorised pass; `TileLayout.merge_fields` merges a delta into the
stored values (HMGET, merge, HSET, atomically). Compaction: `TileLayout.plan_compaction`
and `TileLayout.apply_compaction`. `TileState` is the in-memory state built from these.

>>> from feature_service.aggregation.spec import FeatureSpec
>>> layout = TileLayout([FeatureSpec("n_1h", "count", window_s=3600),
...                      FeatureSpec("total", "sum", "amount")])
>>> state = TileState(layout)
>>> state.add(1000.5, 0, {"amount": 2.0}), state.add(1100.0, 1, {"amount": 3.0})
(True, True)
>>> state.evaluate(1100.0)
{'n_1h': 2, 'total': 5.0}
>>> state.evaluate(5000.0)
{'n_1h': 0, 'total': 5.0}
>>> sorted(state.to_fields())
['a', 'hi', 'lo', 'r:1080', 'r:960', 't:60:1080', 't:60:960', 'v']
"""

from __future__ import annotations

import hashlib
import json
import math
from bisect import insort
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from feature_service.aggregation.algebra import (
    AGGREGATORS,
    IR,
    PRESENT,
    Aggregator,
    is_null,
    non_null_mask,
)
from feature_service.aggregation.spec import FeatureLike, FeatureSpec, check_feature
from feature_service.aggregation.windows import (
    check_levels,
    cover,
    default_hop,
    tile_start,
    tile_starts,
)

__all__ = [
    "Compaction",
    "FeatureSpec",
    "LayoutMismatchError",
    "NeedMoreFields",
    "OutsideRetentionError",
    "TileLayout",
    "TileState",
    "decode_field",
    "encode_field",
    "suggest_levels",
]

LIFETIME_ONLY_LEVELS: tuple[int, ...] = (60, 3600)
LADDER: tuple[int, ...] = (60, 300, 900, 3600, 21600, 86400)
"""Tile sizes `suggest_levels` may add: each divides the next."""
_RAW_OFFSET = 3  # raw event: [ts, seq, mask, *column values]


class OutsideRetentionError(ValueError):
    """The query time reaches before the retained state: the answer would not be exact."""


class LayoutMismatchError(ValueError):
    """Stored fields were written by a different layout (features, order or levels)."""


class NeedMoreFields(Exception):
    """Evaluation needs fields the mapping does not have; `fields` names them.

    >>> layout = TileLayout([FeatureSpec("n", "count", window_s=60)])
    >>> try:
    ...     layout.evaluate_fields({"v": None}, 90.0)
    ... except NeedMoreFields as more:
    ...     more.fields
    ['w', 'r:60', 't:60:0']
    """

    def __init__(self, fields: list[str]) -> None:
        self.fields = fields
        super().__init__(f"need {len(fields)} more fields: {fields[:5]}")


@dataclass(frozen=True)
class Compaction:
    """What compacting at `watermark` does: read `read`, then HSET the result of
    `TileLayout.apply_compaction` and HDEL `delete`, in one transaction.

    >>> layout = TileLayout([FeatureSpec("n", "count", window_s=60), FeatureSpec("s", "count")])
    >>> plan = layout.plan_compaction(["v", "t:60:0", "t:60:60", "r:0", "r:60"], 150.0)
    >>> plan.cutoff, plan.fold, plan.delete
    (60, ('t:60:0',), ('r:0', 't:60:0'))
    """

    watermark: float
    cutoff: int
    read: tuple[str, ...]
    fold: tuple[str, ...]
    delete: tuple[str, ...]


@lru_cache(maxsize=8192)
def _cover_fields(start: int, end: int, levels: tuple[int, ...]) -> tuple[str, ...]:
    """Field names of `windows.cover(start, end, levels)`; cached because every entity
    of a request, and every request within the same minute, asks for the same ones."""
    return tuple(TileLayout.tile_field(level, s) for level, s in cover(start, end, levels))


@lru_cache(maxsize=8192)
def _cover_set(start: int, end: int, levels: tuple[int, ...]) -> frozenset[str]:
    return frozenset(_cover_fields(start, end, levels))


def encode_field(value: Any) -> str:
    """A field value as stored in Redis (compact JSON, by orjson: this is the hot path).

    Returned as `str`: orjson's `bytes` results keep a buffer of at least 4 KiB each,
    which made a flush of 150k small fields hold ~600 MB; the decoded copy is exact.

    >>> encode_field([3, 1.5, None])
    '[3,1.5,null]'
    """
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def decode_field(raw: str | bytes | None) -> Any:
    """A field value read from Redis; None (absent) stays None.

    >>> decode_field(b'[3,1.5,null]'), decode_field(None)
    ([3, 1.5, None], None)
    """
    return None if raw is None else orjson.loads(raw)


def _raw_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    return None if is_null(value) else value


def _column_list(values: npt.NDArray[Any]) -> list[Any]:
    """A column as JSON-able Python values with None for nulls."""
    out: list[Any] = values.tolist()
    mask = non_null_mask(values)
    if not mask.all():
        for i in np.flatnonzero(~mask).tolist():
            out[i] = None
    return out


def _slot_key(feature: FeatureLike) -> tuple[str, str | None, Any]:
    """Features with equal keys aggregate the same events into the same IR."""
    where = getattr(feature, "where", None)
    if where is not None:
        where = getattr(where, "text", where)
        try:
            hash(where)
        except TypeError:
            where = ("unhashable", id(where))
    aggregation = "var" if feature.aggregation == "std" else feature.aggregation
    return (aggregation, feature.column, where)


def suggest_levels(
    features: Sequence[FeatureLike], ladder: Sequence[int] = LADDER
) -> tuple[int, ...]:
    """The hops plus coarser tile sizes from `ladder` that keep reads short.

    A window of ``W`` with hop ``h`` reads about ``W / h`` tiles when the levels are just
    the hops; with a coarser level ``C`` it reads at most ``2 * C / h + W / C``. Adds each
    ladder size above the finest hop and at most half the longest window that keeps the
    levels a divisibility chain. Costs one more tile update per event per added level.

    >>> suggest_levels([FeatureSpec("a", "count", window_s=3600),
    ...                 FeatureSpec("b", "sum", "x", window_s=7 * 86400)])
    (60, 300, 900, 3600, 21600, 86400)
    """
    hops = {
        f.hop_s if f.hop_s is not None else default_hop(f.window_s)
        for f in features
        if f.window_s is not None
    }
    if not hops:
        return LIFETIME_ONLY_LEVELS
    levels = check_levels(hops)
    longest = max(f.window_s for f in features if f.window_s is not None)
    for size in ladder:
        if levels[0] < size <= longest // 2 and size not in levels:
            try:
                levels = check_levels({*levels, size})
            except ValueError:
                continue
    return levels


class TileLayout:
    """The tile layout of one feature view: levels, slots, field names, reads and writes.

    `features` are `FeatureSpec`s or anything with their attributes (the registry's
    `Feature`; its `where` only matters through ``where.text``, to share slots).
    `retention_s` (default: the longest window) is how far behind the watermark state
    is kept; it must be at least the longest window. `levels` may add tile sizes (see
    `suggest_levels`: coarser levels make long windows cheaper to read); it must include
    every hop, and each level must divide the next.

    >>> layout = TileLayout(
    ...     [FeatureSpec("s", "sum", "x", 3600), FeatureSpec("m", "max", "x", 86400)]
    ... )
    >>> layout.levels, layout.retention_s
    ((60, 3600), 86400)
    >>> layout.plan(7230.0)[:5]
    ['v', 'w', 'lo', 'hi', 'r:7200']
    """

    def __init__(
        self,
        features: Sequence[FeatureLike],
        *,
        retention_s: int | None = None,
        levels: Iterable[int] | None = None,
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
        wanted = hops | set(levels or ())
        self.levels: tuple[int, ...] = check_levels(wanted or LIFETIME_ONLY_LEVELS)
        self.finest = self.levels[0]
        self.coarsest = self.levels[-1]
        self.max_window: int = max((w[0] for w in self.windows if w is not None), default=0)
        retention = self.max_window if retention_s is None else retention_s
        if not isinstance(retention, int) or retention < self.max_window:
            raise ValueError(
                f"retention_s must be a whole number of seconds >= the longest window "
                f"({self.max_window}), not {retention!r}"
            )
        self.retention_s: int = retention
        self.columns: tuple[str, ...] = tuple(
            sorted({f.column for f in self.features if f.column is not None})
        )

        # slots: features sharing aggregation state
        keys: dict[tuple[str, str | None, Any], int] = {}
        slot_of: list[int] = []
        slot_feature: list[int] = []
        for i, f in enumerate(self.features):
            key = _slot_key(f)
            if key not in keys:
                keys[key] = len(slot_feature)
                slot_feature.append(i)
            slot_of.append(keys[key])
        self.slot_of: tuple[int, ...] = tuple(slot_of)
        """Slot of each feature."""
        self.slot_feature: tuple[int, ...] = tuple(slot_feature)
        """First feature of each slot: its pass bit is the slot's."""
        self.slot_aggs: tuple[Aggregator, ...] = tuple(
            AGGREGATORS[_slot_key(self.features[i])[0]] for i in slot_feature
        )
        self.slot_columns: tuple[str | None, ...] = tuple(
            self.features[i].column for i in slot_feature
        )
        self._slot_col: tuple[int | None, ...] = tuple(
            None if c is None else _RAW_OFFSET + self.columns.index(c) for c in self.slot_columns
        )
        self.lifetime: tuple[int, ...] = tuple(i for i, w in enumerate(self.windows) if w is None)
        self._lifetime_bits = 0
        for i in self.lifetime:
            self._lifetime_bits |= 1 << slot_of[i]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, w in enumerate(self.windows):
            if w is not None:
                groups.setdefault(w, []).append(i)
        self._window_groups: tuple[tuple[int, int, tuple[int, ...], tuple[int, ...]], ...] = tuple(
            (w, h, tuple(idx), tuple(sorted({slot_of[i] for i in idx})))
            for (w, h), idx in sorted(groups.items())
        )
        description = [
            [f.name, f.aggregation, f.column, *(w or (None, None)), slot]
            for f, w, slot in zip(self.features, self.windows, slot_of, strict=True)
        ]
        digest = hashlib.sha1(
            json.dumps([description, self.levels]).encode(), usedforsecurity=False
        )
        self.fingerprint: str = digest.hexdigest()[:16]
        self._plans: dict[
            tuple[int, frozenset[str] | None], tuple[tuple[str, ...], frozenset[str]]
        ] = {}
        self._selections: dict[frozenset[str], Any] = {}

    @property
    def slots(self) -> int:
        """Number of IRs in a tile."""
        return len(self.slot_aggs)

    # ------------------------------------------------------------------ names, bounds

    @staticmethod
    def tile_field(level: int, start: int) -> str:
        """Field of the tile ``[start, start + level)``."""
        return f"t:{level}:{start}"

    @staticmethod
    def raw_field(start: int) -> str:
        """Field of the raw events of the finest bucket starting at `start`."""
        return f"r:{start}"

    def horizon(self, watermark: float | None) -> float:
        """Events before this time are late (``watermark - retention_s``)."""
        return -math.inf if watermark is None else watermark - self.retention_s

    def cutoff(self, watermark: float) -> int:
        """Start of the oldest tile kept after compacting at `watermark`."""
        return tile_start(watermark - self.retention_s, self.coarsest)

    def is_late(self, ts: float, watermark: float | None) -> bool:
        """Whether an event at `ts` is refused once compaction reached `watermark`."""
        return watermark is not None and ts < watermark - self.retention_s

    def empty_vector(self) -> list[IR]:
        """IRs of no events, one per slot (a tile)."""
        return [agg.empty() for agg in self.slot_aggs]

    def empty_lifetime_vector(self) -> list[IR]:
        """IRs of no events, one per lifetime feature (``a`` and ``b``)."""
        return [self.aggs[i].empty() for i in self.lifetime]

    def slot_bits(self, passes: Sequence[bool] | None) -> int:
        """Bit k set when slot k takes an event whose per-feature `where` results are
        `passes` (None: every feature)."""
        if passes is None:
            return (1 << self.slots) - 1
        if len(passes) != len(self.features):
            raise ValueError(f"passes has {len(passes)} entries for {len(self.features)} features")
        bits = 0
        for k, i in enumerate(self.slot_feature):
            if passes[i]:
                bits |= 1 << k
        return bits

    # ------------------------------------------------------------------ reading

    def plan(self, t: float) -> list[str]:
        """The fields needed to evaluate every feature at `t`, for one HMGET.

        Enough unless a lifetime feature is asked about a time before its latest event;
        then `evaluate_fields` raises `NeedMoreFields` naming the rest.
        """
        return list(self.planned(t)[0])

    def _selection(
        self, only: frozenset[str] | None
    ) -> tuple[tuple[tuple[int, int, tuple[int, ...], tuple[int, ...]], ...], tuple[int, ...]]:
        """The window groups (with only the wanted features and their slots) and the
        lifetime positions (into `self.lifetime`) that features `only` need (all: None)."""
        if only is None:
            return self._window_groups, tuple(range(len(self.lifetime)))
        cached = self._selections.get(only)
        if cached is None:
            unknown = only - set(self.names)
            if unknown:
                raise ValueError(f"unknown features {sorted(unknown)}")
            wanted = {i for i, name in enumerate(self.names) if name in only}
            groups = []
            for window_s, hop_s, idx, _ in self._window_groups:
                keep = tuple(i for i in idx if i in wanted)
                if keep:
                    slots = tuple(sorted({self.slot_of[i] for i in keep}))
                    groups.append((window_s, hop_s, keep, slots))
            life = tuple(j for j, i in enumerate(self.lifetime) if i in wanted)
            cached = self._selections[only] = (tuple(groups), life)
        return cached

    def planned(
        self, t: float, only: frozenset[str] | None = None
    ) -> tuple[tuple[str, ...], frozenset[str]]:
        """`plan(t)` (for the features `only`, default all) as a tuple and a set, cached:
        it depends on `t` only through the finest tile start (every hop is a multiple of
        the finest level), so all requests within the same finest tile share it."""
        ft = tile_start(t, self.finest)
        cached = self._plans.get((ft, only))
        if cached is None:
            groups, life = self._selection(only)
            names = ["v", "w", "lo", "hi", self.raw_field(ft)]
            if life:
                names.append("a")
            seen = set(names)
            for window_s, hop_s, _, _ in groups:
                ws = tile_start(ft, hop_s) - window_s
                for name in _cover_fields(ws, ft, self.levels):
                    if name not in seen:
                        seen.add(name)
                        names.append(name)
            if len(self._plans) >= 256:
                self._plans.clear()
            cached = self._plans[ft, only] = (tuple(names), frozenset(names))
        return cached

    def evaluate_fields(
        self,
        fields: Mapping[str, Any],
        t: float,
        *,
        complete: bool = False,
        absent: frozenset[str] | None = None,
        only: frozenset[str] | None = None,
    ) -> dict[str, Any]:
        """Every feature (or those named in `only`) at time `t` from (decoded) field values.

        A field absent from the hash must be present in `fields` with value None (as
        HMGET returns it), or be named in `absent` (e.g. the set of `planned(t)`, with
        `fields` holding only the non-null replies); with `complete`, `fields` is the
        whole state and missing keys are absent fields. Raises `NeedMoreFields` (fields
        to fetch and add to the mapping before calling again), `OutsideRetentionError`
        (t before the retained state) or `LayoutMismatchError`.
        """
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"query time must be finite, not {t!r}")
        missing: list[str] = []

        def get(name: str) -> Any:
            if name in fields:
                return fields[name]
            if not complete and (absent is None or name not in absent):
                missing.append(name)
            return None

        version = get("v")
        if version is not None and version != self.fingerprint:
            raise LayoutMismatchError(
                f"state written by layout {version}, this layout is {self.fingerprint}"
            )
        watermark = get("w")
        cutoff = None if watermark is None else self.cutoff(watermark)
        ft = tile_start(t, self.finest)
        raw = get(self.raw_field(ft)) or ()

        groups, life = self._selection(only)
        windowed: list[tuple[tuple[int, ...], tuple[int, ...], list[Any]]] = []
        for window_s, hop_s, idx, slots in groups:
            ws = tile_start(t, hop_s) - window_s
            if cutoff is not None and ws < cutoff:
                raise OutsideRetentionError(
                    f"the {window_s} s window at t={t} starts at {ws}, before the retained "
                    f"state (cutoff {cutoff}, watermark {watermark})"
                )
            if absent is None:
                vectors = [get(name) for name in _cover_fields(ws, ft, self.levels)]
            else:  # `fields` holds only what the hash has: look at those, not the cover
                cover_set = _cover_set(ws, ft, self.levels)
                vectors = [v for name, v in fields.items() if name in cover_set]
            windowed.append((idx, slots, vectors))

        lifetime_totals: list[IR] | None = None
        lifetime_vectors: list[Any] = []
        if life:
            hi = get("hi")
            if hi is None or t >= hi:
                lifetime_totals = get("a") or self.empty_lifetime_vector()
            elif cutoff is not None and t < cutoff:
                raise OutsideRetentionError(
                    f"lifetime features at t={t} are before the retained state "
                    f"(cutoff {cutoff}, watermark {watermark})"
                )
            else:
                lo = get("lo")
                lifetime_vectors.append(get("b"))
                if lo is not None:  # None: no event was ever added
                    start = lo if cutoff is None else max(lo, cutoff)
                    lifetime_vectors.extend(
                        get(name) for name in _cover_fields(start, ft, self.levels)
                    )
        if missing:
            raise NeedMoreFields(missing)

        values: list[Any] = [None] * len(self.features)
        slot_of = self.slot_of
        for idx, slots, vectors in windowed:
            present = [vec for vec in vectors if vec is not None]
            merged: dict[int, IR] = {}
            for k in slots:
                agg = self.slot_aggs[k]
                ir = agg.merge_all([vec[k] for vec in present])
                merged[k] = self._add_raw(ir, k, agg, raw, t)
            for i in idx:
                values[i] = self.aggs[i].finalize(merged[slot_of[i]], t)
        for j in life:
            i = self.lifetime[j]
            agg = self.aggs[i]
            if lifetime_totals is not None:
                values[i] = agg.finalize(lifetime_totals[j], t)
                continue
            base, *tiles = lifetime_vectors
            k = slot_of[i]
            parts = [vec[k] for vec in tiles if vec is not None]
            ir = agg.merge_all(parts if base is None else [base[j], *parts])
            values[i] = agg.finalize(self._add_raw(ir, k, agg, raw, t), t)
        if only is None:
            return dict(zip(self.names, values, strict=True))
        return {name: v for name, v in zip(self.names, values, strict=True) if name in only}

    def _add_raw(
        self, ir: IR, slot: int, agg: Aggregator, raw: Iterable[Sequence[Any]], t: float
    ) -> IR:
        bit = 1 << slot
        col = self._slot_col[slot]
        for ev in raw:
            if ev[0] > t:
                break
            if ev[2] & bit:
                ir = agg.update(ir, ev[0], ev[1], PRESENT if col is None else ev[col])
        return ir

    def read(self, t: float, fetch: Callable[[list[str]], Sequence[Any]]) -> dict[str, Any]:
        """Evaluate at `t` reading through `fetch` (names -> decoded values, e.g. HMGET).

        One call of `fetch` in the common case, two when `NeedMoreFields` is raised.
        """
        names = self.plan(t)
        fields: dict[str, Any] = dict(zip(names, fetch(names), strict=True))
        for _ in range(3):
            try:
                return self.evaluate_fields(fields, t)
            except NeedMoreFields as more:
                fields.update(zip(more.fields, fetch(more.fields), strict=True))
        raise RuntimeError("evaluation kept asking for more fields")  # pragma: no cover

    # ------------------------------------------------------------------ writing

    def batch_fields(
        self,
        ts: npt.ArrayLike,
        seq: npt.ArrayLike,
        columns: Mapping[str, npt.ArrayLike],
        passes: npt.ArrayLike | None = None,
        entities: npt.ArrayLike | None = None,
    ) -> dict[Hashable, dict[str, Any]]:
        """Field deltas of a batch of (accepted) events, per entity, in one numpy pass.

        `columns` maps each of `self.columns` to an array (None/NaN are nulls); `passes`
        is an ``(n, len(features))`` boolean array of `where` results (None: all pass);
        `entities` gives each event's entity (None: all one entity, keyed None). Merge
        each delta into the stored fields with `merge_fields`. Late events must already
        have been filtered out (`is_late`).
        """
        ts_a = np.asarray(ts, dtype=np.float64)
        seq_a = np.asarray(seq, dtype=np.int64)
        n = ts_a.size
        if ts_a.shape != (n,) or seq_a.shape != (n,):
            raise ValueError("ts and seq must be 1-d arrays of one length")
        n_slots = self.slots
        if passes is None:
            pass_a = np.ones((n, n_slots), dtype=np.bool_)
        else:
            per_feature = np.asarray(passes, dtype=np.bool_).reshape(n, len(self.features))
            pass_a = per_feature[:, list(self.slot_feature)]
        cols: dict[str, npt.NDArray[Any]] = {}
        for name in self.columns:
            arr = np.asarray(columns[name]) if name in columns else np.full(n, None, object)
            if arr.shape != (n,):
                raise ValueError(f"column {name!r} must have one value per event")
            cols[name] = arr
        if entities is None:
            keys: list[Hashable] = [None]
            ent = np.zeros(n, dtype=np.int64)
        else:
            uniq, inverse = np.unique(np.asarray(entities), return_inverse=True)
            keys = uniq.tolist()
            ent = inverse.astype(np.int64).reshape(n)
        relevant = np.asarray(pass_a.any(axis=1), dtype=np.bool_)
        # one sort by (entity, ts, seq): then every level's tiles and every raw bucket are
        # contiguous runs, and events within a bucket are in (ts, seq) order
        order = np.lexsort((seq_a, ts_a, ent))
        if not relevant.all():
            order = order[relevant[order]]
        ts_a, seq_a, pass_a, ent = ts_a[order], seq_a[order], pass_a[order], ent[order]
        cols = {k: v[order] for k, v in cols.items()}
        n = ts_a.size
        out: dict[int, dict[str, Any]] = {}
        if n == 0:
            return {}
        ent_change = np.empty(n, dtype=np.bool_)
        ent_change[0] = True
        np.not_equal(ent[1:], ent[:-1], out=ent_change[1:])
        for e in ent[ent_change].tolist():
            out[e] = {"v": self.fingerprint}
        slot_values = [None if c is None else cols[c] for c in self.slot_columns]
        all_pass: list[bool] = np.asarray(pass_a.all(axis=0)).tolist()

        raw_runs: tuple[list[int], list[int], list[int]] | None = None
        coarse_first: list[int] = []
        for level in self.levels:
            starts = tile_starts(ts_a, level)
            change = ent_change.copy()
            change[1:] |= starts[1:] != starts[:-1]
            tile_id = np.cumsum(change) - 1
            n_tiles = int(tile_id[-1]) + 1
            per_slot: list[list[IR]] = []
            for k, agg in enumerate(self.slot_aggs):
                vals = slot_values[k]
                if all_pass[k]:
                    per_slot.append(agg.grouped(ts_a, seq_a, vals, tile_id, n_tiles))
                else:
                    m = pass_a[:, k]
                    per_slot.append(
                        agg.grouped(
                            ts_a[m],
                            seq_a[m],
                            None if vals is None else vals[m],
                            tile_id[m],
                            n_tiles,
                        )
                    )
            tile_ent = ent[change].tolist()
            tile_start_l = starts[change].tolist()
            prefix = f"t:{level}:"
            for q, (e, s) in enumerate(zip(tile_ent, tile_start_l, strict=True)):
                out[e][prefix + str(s)] = [irs[q] for irs in per_slot]
            if level == self.finest:
                raw_runs = (tile_ent, tile_start_l, np.flatnonzero(change).tolist())
            if level == self.coarsest:
                coarse_first = starts[ent_change].tolist()  # ts-sorted: first is lowest

        # raw events of the finest buckets
        if n_slots <= 62:
            weights = np.left_shift(np.int64(1), np.arange(n_slots, dtype=np.int64))
            bits: list[int] = (pass_a.astype(np.int64) @ weights).tolist()
        else:
            bits = [sum(1 << k for k, p in enumerate(row) if p) for row in pass_a.tolist()]
        col_lists = [_column_list(cols[c]) for c in self.columns]
        rows = list(map(list, zip(ts_a.tolist(), seq_a.tolist(), bits, *col_lists, strict=True)))
        assert raw_runs is not None
        run_ent, run_start, run_begin = raw_runs
        run_end = [*run_begin[1:], n]
        for e, s, a, b in zip(run_ent, run_start, run_begin, run_end, strict=True):
            out[e][self.raw_field(s)] = rows[a:b]
        for e, lo in zip(out, coarse_first, strict=True):  # lowest coarsest tile start
            out[e]["lo"] = lo

        if self.lifetime:
            life_slots = [self.slot_of[i] for i in self.lifetime]
            life_pass = pass_a[:, life_slots]
            reached = life_pass.any(axis=1)
            if reached.any():
                hi = np.full(len(keys), -np.inf)
                np.maximum.at(hi, ent[reached], ts_a[reached])
                totals: list[list[IR]] = []
                for j, i in enumerate(self.lifetime):
                    m = life_pass[:, j]
                    vals = slot_values[life_slots[j]]
                    totals.append(
                        self.aggs[i].grouped(
                            ts_a[m],
                            seq_a[m],
                            None if vals is None else vals[m],
                            ent[m],
                            len(keys),
                        )
                    )
                for e in np.unique(ent[reached]).tolist():
                    out[e]["hi"] = float(hi[e])
                    out[e]["a"] = [irs[e] for irs in totals]
        return {keys[e]: fields for e, fields in out.items()}

    def merge_field(self, name: str, old: Any, new: Any) -> Any:
        """The stored value of field `name` after merging delta `new` into `old`."""
        if old is None:
            return new
        if new is None:
            return old
        kind = name[0]
        if kind == "t":
            return [agg.merge(a, b) for agg, a, b in zip(self.slot_aggs, old, new, strict=True)]
        if kind == "r":
            if not old:
                return new
            if not new or (old[-1][0], old[-1][1]) <= (new[0][0], new[0][1]):
                return [*old, *new]
            return sorted([*old, *new], key=lambda ev: (ev[0], ev[1]))
        if name in ("a", "b"):
            return [
                self.aggs[i].merge(a, b) for i, a, b in zip(self.lifetime, old, new, strict=True)
            ]
        if name == "hi" or name == "w":
            return max(old, new)
        if name == "lo":
            return min(old, new)
        if name == "v":
            if old != new:
                raise LayoutMismatchError(f"state written by layout {old}, delta by {new}")
            return new
        raise KeyError(f"unknown field {name!r}")

    def merge_fields(self, stored: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
        """New values of the fields of `delta` (`stored` holds their current values)."""
        return {name: self.merge_field(name, stored.get(name), new) for name, new in delta.items()}

    # ------------------------------------------------------------------ compaction

    def plan_compaction(
        self, field_names: Iterable[str], watermark: float, stored: float | None = None
    ) -> Compaction:
        """Which fields compacting at `watermark` reads, folds into `b` and deletes.

        `stored` is the state's own `w`, if it has one: compaction then goes at least that
        far. A state can receive tiles older than its own cutoff (a backfill of old
        events; a writer whose partitions lag another's): they must be folded and
        dropped at once, because readers take `cutoff(w)` as the line below which
        everything is in `b`, and a tile left there would be counted by no one.
        """
        if stored is not None and stored > watermark:
            watermark = stored
        cutoff = self.cutoff(watermark)
        fold: list[tuple[int, str]] = []
        delete: list[str] = []
        for name in field_names:
            kind = name[:2]
            if kind == "t:":
                _, level, start = name.split(":")
                if int(start) < cutoff:
                    delete.append(name)
                    if self.lifetime and int(level) == self.coarsest:
                        fold.append((int(start), name))
            elif kind == "r:" and int(name[2:]) < cutoff:
                delete.append(name)
        fold.sort()
        folded = tuple(name for _, name in fold)
        read = ("w", "lo", *(("b", *folded) if self.lifetime else ()))
        return Compaction(float(watermark), cutoff, read, folded, tuple(sorted(delete)))

    def apply_compaction(self, plan: Compaction, values: Mapping[str, Any]) -> dict[str, Any]:
        """Fields to set for `plan`, given the current values of `plan.read`."""
        old_w = values.get("w")
        updates: dict[str, Any] = {
            "w": plan.watermark if old_w is None else max(old_w, plan.watermark)
        }
        lo = values.get("lo")
        if lo is not None and lo < plan.cutoff:
            updates["lo"] = plan.cutoff
        if self.lifetime and plan.fold:
            base = values.get("b") or self.empty_lifetime_vector()
            for name in plan.fold:
                vec = values.get(name)
                if vec is not None:
                    base = [
                        self.aggs[i].merge(b, vec[self.slot_of[i]])
                        for b, i in zip(base, self.lifetime, strict=True)
                    ]
            updates["b"] = base
        return updates


class TileState:
    """In-memory tile state of one entity: the fields of `TileLayout`, kept in a dict.

    >>> layout = TileLayout([FeatureSpec("last_x", "last", "x", 120, 60)])
    >>> state = TileState(layout)
    >>> [state.add(ts, i, {"x": ts * 10}) for i, ts in enumerate([10.0, 70.0, 200.0])]
    [True, True, True]
    >>> state.compact(watermark=250.0)
    >>> state.add(100.0, 3, {"x": 0.0})  # before 250 - 120: late
    False
    >>> state.evaluate(250.0)
    {'last_x': 2000.0}
    >>> state.evaluate(179.0)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    OutsideRetentionError: the 120 s window at t=179.0 starts at 0, before the retained ...
    """

    def __init__(self, layout: TileLayout, fields: Mapping[str, Any] | None = None) -> None:
        self.layout = layout
        self._fields: dict[str, Any] = {}
        if fields:
            version = fields.get("v")
            if version is not None and version != layout.fingerprint:
                raise LayoutMismatchError(
                    f"state written by layout {version}, this layout is {layout.fingerprint}"
                )
            self._fields = json.loads(json.dumps(dict(fields)))  # own, mutable copy

    @classmethod
    def from_fields(cls, layout: TileLayout, fields: Mapping[str, Any]) -> TileState:
        """State from a field mapping (decoded values, as `to_fields` returns them)."""
        return cls(layout, fields)

    def to_fields(self) -> dict[str, Any]:
        """The state as a flat mapping of field name to JSON-able value (a copy)."""
        copied: dict[str, Any] = json.loads(json.dumps(self._fields))
        return copied

    @property
    def watermark(self) -> float | None:
        """Watermark of the last compaction, if any."""
        w: float | None = self._fields.get("w")
        return w

    def add(
        self,
        ts: float,
        seq: int,
        values: Mapping[str, Any],
        passes: Sequence[bool] | None = None,
    ) -> bool:
        """Add one event; False (and no change) if it is late.

        `values` maps column names to values (missing: null); `passes` has feature i's
        `where` result at position i (None: every feature). Features without `where`
        must get True; features of one slot (same aggregation state and `where`) must get
        the same result, which holds whenever `passes` comes from evaluating `where`.
        """
        layout = self.layout
        ts = float(ts)
        if not math.isfinite(ts):
            raise ValueError(f"event time must be finite, not {ts!r}")
        if layout.is_late(ts, self.watermark):
            return False
        bits = layout.slot_bits(passes)
        if not bits:
            return True
        seq = int(seq)
        fields = self._fields
        fields["v"] = layout.fingerprint
        row = [ts, seq, bits, *(_raw_value(values.get(c)) for c in layout.columns)]
        chosen = [k for k in range(layout.slots) if bits >> k & 1]
        slot_values = [PRESENT if c is None else row[c] for c in layout._slot_col]
        for level in layout.levels:
            name = layout.tile_field(level, tile_start(ts, level))
            vec = fields.get(name)
            if vec is None:
                vec = fields[name] = layout.empty_vector()
            for k in chosen:
                vec[k] = layout.slot_aggs[k].update(vec[k], ts, seq, slot_values[k])
        raw_name = layout.raw_field(tile_start(ts, layout.finest))
        insort(fields.setdefault(raw_name, []), row, key=lambda ev: (ev[0], ev[1]))
        coarse = tile_start(ts, layout.coarsest)
        lo = fields.get("lo")
        fields["lo"] = coarse if lo is None else min(lo, coarse)
        if bits & layout._lifetime_bits:
            totals = fields.get("a")
            if totals is None:
                totals = fields["a"] = layout.empty_lifetime_vector()
            for j, i in enumerate(layout.lifetime):
                k = layout.slot_of[i]
                if bits >> k & 1:
                    totals[j] = layout.aggs[i].update(totals[j], ts, seq, slot_values[k])
            hi = fields.get("hi")
            fields["hi"] = ts if hi is None else max(hi, ts)
        return True

    def add_batch(
        self,
        ts: npt.ArrayLike,
        seq: npt.ArrayLike,
        columns: Mapping[str, npt.ArrayLike],
        passes: npt.ArrayLike | None = None,
    ) -> npt.NDArray[np.bool_]:
        """Add many events at once (vectorised); returns which were accepted (not late)."""
        ts_a = np.asarray(ts, dtype=np.float64)
        seq_a = np.asarray(seq, dtype=np.int64)
        if ts_a.size and not np.all(np.isfinite(ts_a)):
            raise ValueError("event times must be finite")
        accepted = ts_a >= self.layout.horizon(self.watermark)
        cols = {k: np.asarray(v) for k, v in columns.items()}
        pass_a = None if passes is None else np.asarray(passes, dtype=np.bool_)
        if not accepted.all():
            ts_a, seq_a = ts_a[accepted], seq_a[accepted]
            cols = {k: v[accepted] for k, v in cols.items()}
            pass_a = None if pass_a is None else pass_a[accepted]
        delta = self.layout.batch_fields(ts_a, seq_a, cols, pass_a).get(None, {})
        fields = self._fields
        for name, value in self.layout.merge_fields(fields, delta).items():
            fields[name] = value
        return accepted

    def compact(self, watermark: float) -> None:
        """Fold everything older than ``watermark - retention_s`` (to a coarsest tile
        boundary) into the base and drop it; later events before that horizon are late."""
        layout = self.layout
        plan = layout.plan_compaction(list(self._fields), watermark, self._fields.get("w"))
        updates = layout.apply_compaction(plan, {k: self._fields.get(k) for k in plan.read})
        for name in plan.delete:
            del self._fields[name]
        self._fields.update(updates)

    def evaluate(self, t: float) -> dict[str, Any]:
        """Every feature of the view at time `t` (exact; see the module docstring)."""
        return self.layout.evaluate_fields(self._fields, t, complete=True)
