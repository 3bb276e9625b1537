"""A busy entity's compacted events, kept per hop behind its horizon (`aggregation.state`).

Features sharing their aggregation, column, `where` and hop form one *group*
(`summary_plan`); a group keeps, for an entity compacted at horizon ``H``, what its
windows at any ``t >= H`` need of the events below ``H``: the hops
``[floor(H, h) - W, floor(H, h))`` plus the partial hop ``[floor(H, h), H)`` (`Kept`),
``W`` the group's longest window. How, the aggregation says (`Aggregation.compacted`):

- ``suffix``: ``irs[j]`` is the IR of every compacted event from hop ``j`` on; a
  window starting at ``s < H`` merges ``irs[(s - lo) / h]`` with the head's events;
- ``hops``: ``irs[j]`` is hop ``j``'s IR; a read merges those from ``s`` on;
- ``distinct``: each distinct value (`values.distinct_value`) and the start of the
  newest hop it occurs in; a read takes the values whose newest hop starts at or
  after ``s`` (`Aggregation.of_distinct`).

Advancing the horizon folds the newly compacted events in (`advance`): the new suffix
from hop ``x`` is the old one from ``x`` merged with the new events from ``x`` on, so no
per-hop IR is needed to move a suffix, and hops older than the new ``lo`` are dropped.

>>> from feature_service.aggregation.spec import FeatureSpec
>>> from feature_service.aggregation.state.layout import StateLayout
>>> layout = StateLayout([FeatureSpec("n", "count", window_s=120, hop_s=60)])
>>> (group,) = summary_plan(layout).groups
>>> kept = advance(group, None, 130.0, np.array([10.0, 70.0, 125.0]), np.arange(3), None)
>>> kept.lo, kept.irs
(0, [3, 2, 1])
>>> window_ir(group, kept, 60), window_ir(group, kept, 120)
(2, 1)
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from feature_service.aggregation.base import IR, Aggregation
from feature_service.aggregation.state.events import Meta
from feature_service.aggregation.state.layout import StateLayout
from feature_service.aggregation.values import distinct_value, non_null_mask, value_key
from feature_service.aggregation.windows import hop_start, hop_starts

FORMS = ("suffix", "hops", "distinct")

_LENGTH = struct.Struct("<I")

ZLIB_LEVEL = 6
"""Compression of the stored summary (only busy entities have one; dictionaries of
distinct values compress 3-4x)."""


@dataclass(frozen=True)
class SummaryGroup:
    """Features of a view that share their compacted hops."""

    agg: Aggregation
    form: str  # `Aggregation.compacted`
    column: str | None
    filter: int | None  # `StateLayout.feature_filter`
    hop: int
    window: int  # the group's longest window
    feature: int  # one of its features (its `where` column of the flags)

    def top(self, horizon: float) -> int:
        """Start of the partial hop holding the horizon."""
        return hop_start(horizon, self.hop)

    def lo(self, horizon: float) -> int:
        """Start of the oldest hop a read at ``t >= horizon`` can need."""
        return self.top(horizon) - self.window

    @property
    def slots(self) -> int:
        return self.window // self.hop + 1


@dataclass(frozen=True)
class SummaryPlan:
    """A layout's groups, and each feature's group (None: lifetime)."""

    groups: tuple[SummaryGroup, ...]
    group_of: tuple[int | None, ...]


@lru_cache(maxsize=512)
def summary_plan(layout: StateLayout) -> SummaryPlan:
    """The groups of `layout`'s windowed features (built once per layout)."""
    keys: dict[tuple[Any, ...], int] = {}
    windows: list[int] = []
    firsts: list[int] = []
    group_of: list[int | None] = []
    for i, f in enumerate(layout.features):
        window = layout.windows[i]
        if window is None:
            group_of.append(None)
            continue
        key = (id(layout.aggs[i]), f.column, layout.feature_filter[i], window[1])
        g = keys.setdefault(key, len(keys))
        if g == len(windows):
            windows.append(window[0])
            firsts.append(i)
        windows[g] = max(windows[g], window[0])
        group_of.append(g)
    groups = []
    for key, g in keys.items():
        i = firsts[g]
        agg = layout.aggs[i]
        if agg.compacted not in FORMS:
            raise ValueError(f"{agg.name}: unknown compacted form {agg.compacted!r}")
        groups.append(SummaryGroup(agg, agg.compacted, key[1], key[2], key[3], windows[g], i))
    return SummaryPlan(tuple(groups), tuple(group_of))


@dataclass
class Kept:
    """One group's compacted hops of one entity: from hop ``lo`` on, one slot per hop,
    the last the partial hop up to the horizon."""

    lo: int
    irs: list[IR] | None = None  # suffix, hops
    values: list[Any] | None = None  # distinct: the distinct values ...
    newest: npt.NDArray[np.int64] | None = None  # ... and the start of each one's newest hop
    _newest_of: dict[Any, int] | None = None

    def newest_of(self) -> dict[Any, int]:
        """distinct: value -> start of its newest hop."""
        if self._newest_of is None:
            assert self.values is not None and self.newest is not None
            self._newest_of = dict(zip(self.values, self.newest.tolist(), strict=True))
        return self._newest_of


def advance(
    group: SummaryGroup,
    old: Kept | None,
    horizon: float,
    ts: npt.NDArray[np.float64],
    seq: npt.NDArray[np.int64],
    values: npt.NDArray[Any] | None,
) -> Kept:
    """`old` (None: nothing kept) with newly compacted events of the group's features
    (sorted by ts, seq; all below `horizon`, the new horizon) folded in, and hops a read
    at or after `horizon` cannot need dropped."""
    h = group.hop
    lo = group.lo(horizon)
    inside = ts >= lo
    if values is not None:
        inside &= non_null_mask(values)
    idx = np.flatnonzero(inside)
    hops = hop_starts(ts[idx], h) if idx.size else np.zeros(0, dtype=np.int64)
    if group.form == "distinct":
        return _advance_distinct(group, old, lo, hops, None if values is None else values[idx])
    agg = group.agg
    n = group.slots
    slots = (hops - lo) // h
    fresh = agg.grouped(ts[idx], seq[idx], None if values is None else values[idx], slots, n)
    if group.form == "suffix":
        acc = agg.empty()
        for j in range(n - 1, -1, -1):
            acc = fresh[j] = agg.merge(fresh[j], acc)
    if old is not None and old.irs is not None:
        shift = (lo - old.lo) // h  # hop j now is hop j + shift before
        # hops: only the hops with new events merge, the others are the old IRs
        touched = set(slots.tolist()) if group.form == "hops" else None
        for j in range(max(0, len(old.irs) - shift)):
            if touched is None or j in touched:
                fresh[j] = agg.merge(old.irs[j + shift], fresh[j])
            else:
                fresh[j] = old.irs[j + shift]
    return Kept(lo, fresh)


def _advance_distinct(
    group: SummaryGroup, old: Kept | None, lo: int, hops: npt.NDArray[np.int64], values: Any
) -> Kept:
    newest: dict[Any, int] = {}
    if old is not None and old.values is not None:
        assert old.newest is not None
        newest = {v: n for v, n in zip(old.values, old.newest.tolist(), strict=True) if n >= lo}
    if values is not None and values.size:
        codes, uniques = pd.factorize(values)  # hashed in C: each value once below
        top = np.full(len(uniques), np.iinfo(np.int64).min)
        np.maximum.at(top, codes, hops)
        for v, hs in zip(np.asarray(uniques, dtype=object).tolist(), top.tolist(), strict=True):
            c = distinct_value(v)
            if newest.get(c, lo - 1) < hs:
                newest[c] = hs
    ordered = sorted(newest, key=value_key)
    return Kept(lo, None, ordered, np.asarray([newest[v] for v in ordered], dtype=np.int64))


def window_ir(group: SummaryGroup, kept: Kept, start: int) -> IR:
    """The IR of the compacted events from `start` (a hop start, below the horizon)."""
    assert kept.irs is not None
    j = (start - kept.lo) // group.hop
    if j < 0:
        raise ValueError(f"hop {start} is older than the kept ones (from {kept.lo})")
    if group.form == "suffix":
        return kept.irs[j] if j < len(kept.irs) else group.agg.empty()
    return group.agg.merge_all(kept.irs[j:])


def window_distinct(kept: Kept, start: int, head: Sequence[Any]) -> Sequence[Any]:
    """The distinct values of the compacted events from `start` and of `head` (values of
    the head's events in the window, nulls left out), as a sequence built on demand (a
    count needs only its length)."""
    assert kept.values is not None and kept.newest is not None
    picked = np.flatnonzero(kept.newest >= start)
    newest = kept.newest_of()
    extra = []
    for v in set(head):
        c = v if type(v) is str else distinct_value(v)
        if newest.get(c, start - 1) < start:
            extra.append(c)
    return DistinctValues(kept.values, picked, extra)


class DistinctValues(Sequence[Any]):
    """``values[picked]`` then `extra`, materialized only when indexed."""

    def __init__(self, values: list[Any], picked: npt.NDArray[np.int64], extra: list[Any]):
        self._values, self._picked, self._extra = values, picked, extra
        self._all: list[Any] | None = None

    def __len__(self) -> int:
        return int(self._picked.size) + len(self._extra)

    def __getitem__(self, index: Any) -> Any:
        if self._all is None:
            values = self._values
            self._all = [values[k] for k in self._picked.tolist()] + self._extra
        return self._all[index]


def summary_of(layout: StateLayout, meta: Meta) -> list[Kept] | None:
    """The kept hops of a compacted entity (None: not compacted), decoded once."""
    if meta.horizon is None or meta.summary is None:
        return None
    if meta.kept is None:
        meta.kept = decode_summary(summary_plan(layout), meta.summary)
    return meta.kept


def _offset_type(group: SummaryGroup) -> type[np.unsignedinteger[Any]]:
    return np.uint16 if group.slots <= 0xFFFF else np.uint32


def encode_summary(plan: SummaryPlan, kept: Sequence[Kept]) -> bytes:
    """The stored form of an entity's groups, zlib-compressed: a uint32 length, JSON
    (per group its ``lo`` and IRs, or ``lo``, distinct values and their count), then
    the distinct groups' newest hops as packed hop offsets."""
    data: list[Any] = []
    packed: list[bytes] = []
    for group, k in zip(plan.groups, kept, strict=True):
        if group.form == "distinct":
            assert k.values is not None and k.newest is not None
            offsets = ((k.newest - k.lo) // group.hop).astype(_offset_type(group))
            data.append([k.lo, k.values])
            packed.append(offsets.tobytes())
        else:
            assert k.irs is not None
            data.append([k.lo, [group.agg.ir_to_json(ir) for ir in k.irs]])
    text = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)
    return zlib.compress(_LENGTH.pack(len(text)) + text + b"".join(packed), ZLIB_LEVEL)


@lru_cache(maxsize=64)
def decode_summary(plan: SummaryPlan, raw: bytes) -> list[Kept]:
    """The groups `encode_summary` stored. Cached: the lookups of a busy entity read the
    same summary until its horizon moves (callers never mutate a `Kept`)."""
    blob = zlib.decompress(raw)
    (m,) = _LENGTH.unpack_from(blob)
    at = _LENGTH.size + m
    data = orjson.loads(blob[_LENGTH.size : at])
    out = []
    for group, item in zip(plan.groups, data, strict=True):
        lo = int(item[0])
        if group.form == "distinct":
            dtype = np.dtype(_offset_type(group))
            n = len(item[1])
            offsets = np.frombuffer(blob, dtype=dtype, count=n, offset=at).astype(np.int64)
            at += n * dtype.itemsize
            out.append(Kept(lo, None, item[1], lo + offsets * group.hop))
        else:
            out.append(Kept(lo, [group.agg.ir_from_json(ir) for ir in item[1]]))
    return out
