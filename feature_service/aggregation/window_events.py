"""Aggregating many windows of sorted events at once: what the kinds' vectorised
`Aggregation.over_windows` read (training sets, and online reads of many rows).

Training sets evaluate each feature at every row's time over the offline log. With a
feature's events sorted by ``(entity, event_ts, seq)`` (`WindowEvents`), each row's
window is a range ``[lo, hi)`` of positions, found by binary search for all rows at
once; every aggregation then computes all its windows in a few numpy passes, in its own
class in `aggregation.kinds`, next to the fold and merge of the same statistic, so the
two cannot drift apart:

- ``count``: difference of bounds (exact);
- ``sum``/``mean``: each window's own values added (`WindowEvents.gathered`) when the
  windows hold at most `GATHER_BUDGET` events together (online reads); beyond that,
  window differences of prefix sums split into an exact part and a
  tiny remainder (`WindowEvents.exact_prefix`): values are rounded to a grid ``2**q``
  coarse enough that every partial sum of the rounded values is an exact float, so
  their window differences are exact, and the remainders are below ``2**q`` (error
  below 1e-20 of the log's total). A plain cumulative sum would lose the small windows
  of a large total. A log whose values add up beyond the float64 range is summed
  scaled by ``2**-SUM_SCALE`` (exact: a power of two), so one window's sum overflows
  only if that window's does, and is then null, as the online IRs say;
- ``var``/``std``: the corrected two-pass algorithm over each window's events, gathered
  in bounded chunks (`gather`, `chunks`);
- ``min``/``max``: `ufunc.reduceat` over the window ranges, lifetime ones a per-entity
  running extreme; ``first``/``last``/``time_since_last``: the window's first/last event;
- ``count_distinct``: with ``prev[i]`` the previous event of the same entity and value
  (`WindowEvents.previous_same`), the distinct values of ``[lo, hi)`` are the ``i``
  there with ``prev[i] < lo``.

Memory is linear in events + windows, never their product: gathers run in chunks of at
most `GATHER_BUDGET` events.

>>> events = WindowEvents.select(np.zeros(3, dtype=np.int64), np.array([1.0, 2.0, 3.0]),
...                              np.array([1.0, 2.0, 4.0]), "float", np.ones(3, dtype=bool))
>>> events.exact_prefix()[0].tolist()
[0.0, 1.0, 3.0, 7.0]
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_service.aggregation.values import as_float_array, distinct_codes, non_null_mask
from feature_service.aggregation.windows import window_starts

Int = npt.NDArray[np.int64]
Float = npt.NDArray[np.float64]

GATHER_BUDGET = 1 << 21
"""Most window events gathered at once (var/std, windowed count_distinct)."""
SUM_SCALE = 64
"""Prefix sums of a log too large for float64 are kept in units of 2**SUM_SCALE."""


@dataclass
class WindowEvents:
    """The events one feature aggregates, sorted by (entity, event_ts, seq), with the
    per-stream arrays the window evaluations share (prefix sums, previous same value)."""

    pos: Int | None  # pos[i]: stream events among the first i view events; None: all
    code: Int
    ts: Float
    values: npt.NDArray[Any] | None  # None: no column
    kind: str | None  # schema type of the column
    cache: dict[str, Any]

    @classmethod
    def select(
        cls,
        code: Int,
        ts: Float,
        column: npt.NDArray[Any] | None,
        kind: str | None,
        member: npt.NDArray[np.bool_],
    ) -> WindowEvents:
        """The events with `member` (a feature's `where` passes, its column not null)
        out of all a view's sorted events; shares the arrays when every event is one."""
        if column is not None:
            member = member & non_null_mask(column)
        if member.all():  # every event: share the view's arrays, no copies
            return cls(None, code, ts, column, kind, {})
        pos = np.zeros(member.size + 1, dtype=np.int64)
        np.cumsum(member, out=pos[1:])
        values = None if column is None else column[member]
        return cls(pos, code[member], ts[member], values, kind, {})

    def bounds(self, lo: Int, hi: Int) -> tuple[Int, Int]:
        """View event positions [lo, hi) as positions in this stream."""
        return (lo, hi) if self.pos is None else (self.pos[lo], self.pos[hi])

    def floats(self) -> Float:
        if "floats" not in self.cache:
            assert self.values is not None
            self.cache["floats"] = as_float_array(self.values)
        out: Float = self.cache["floats"]
        return out

    def exact_prefix(self) -> tuple[Float, Float, int]:
        """Prefix sums of the values split as (exact part, remainder), and the power of two
        they are in units of (0, or `SUM_SCALE` for a log beyond float64); see module doc."""
        if "prefix" not in self.cache:
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
            self.cache["prefix"] = (head, tail, scale)
        prefix: tuple[Float, Float, int] = self.cache["prefix"]
        return prefix

    def window_sums(self, lo: Int, hi: Int) -> tuple[Float, int]:
        """The sum of each window's values in units of ``2**scale`` (see `exact_prefix`),
        and that scale."""
        head, tail, scale = self.exact_prefix()
        return (head[hi] - head[lo]) + (tail[hi] - tail[lo]), scale

    def gathered(self, lo: Int, hi: Int) -> tuple[Float, Int, npt.NDArray[np.bool_]] | None:
        """The values of windows [lo, hi) end to end, each non-empty window's start in
        them and which windows are non-empty, when they hold at most `GATHER_BUDGET`
        events together (online reads, short windows); else None (use prefix sums).
        Summing a window's own values keeps its sum accurate relative to the window,
        where a prefix difference is accurate relative to the whole log."""
        if int((hi - lo).sum()) > GATHER_BUDGET:
            return None
        idx, starts, nonempty = gather(lo, hi)
        return self.floats()[idx], starts, nonempty

    def previous_same(self) -> Int:
        """prev[i]: the previous stream event of the same entity and value, else -1."""
        if "prev" not in self.cache:
            assert self.values is not None
            vcode = distinct_codes(self.values, self.kind)  # 1 == 1.0, as online
            n = vcode.size
            order = np.lexsort((np.arange(n), vcode, self.code))
            prev = np.full(n, -1, dtype=np.int64)
            same = (vcode[order][1:] == vcode[order][:-1]) & (
                self.code[order][1:] == self.code[order][:-1]
            )
            prev[order[1:][same]] = order[:-1][same]
            self.cache["prev"] = prev
        prev_: Int = self.cache["prev"]
        return prev_


@dataclass
class EventIndex:
    """Binary searches over events sorted by (entity code, event_ts): where each query's
    window begins and ends, for many queries at once (training sets and online reads).

    Each event gets the int64 key ``code * (U + 1) + rank(event_ts)`` (``U`` distinct
    times, ranks 1-based), which is sorted, so a bound is one `numpy.searchsorted` over
    the times and one over the keys.

    >>> index = EventIndex.of(np.array([0, 0, 1]), np.array([1.0, 5.0, 2.0]))
    >>> index.upto(np.array([0, 1, -1]), np.array([4.0, 9.0, 9.0])).tolist()
    [1, 3, 0]
    >>> index.since(np.array([0, 1]), np.array([2.0, 0.0])).tolist()
    [1, 2]
    """

    key: Int
    times: Float

    @classmethod
    def of(cls, code: Int, ts: Float) -> EventIndex:
        times, rank = np.unique(ts, return_inverse=True)
        key = np.asarray(code, dtype=np.int64) * (times.size + 1) + rank.reshape(-1) + 1
        return cls(key, times)

    def _base(self, code: Int) -> Int:
        return np.asarray(code, dtype=np.int64) * (self.times.size + 1)

    def upto(self, code: Int, t: Float) -> Int:
        """End (exclusive) of entity `code`'s events with ``ts <= t`` (0 for code -1)."""
        hi_key = self._base(code) + np.searchsorted(self.times, t, "right")
        hi = np.searchsorted(self.key, hi_key, "right").astype(np.int64)
        hi[np.asarray(code) < 0] = 0
        return hi

    def since(self, code: Int, start: Float) -> Int:
        """First of entity `code`'s events with ``ts >= start`` (0 for code -1)."""
        lo_key = self._base(code) + np.searchsorted(self.times, start, "left")
        lo = np.searchsorted(self.key, lo_key, "right").astype(np.int64)
        lo[np.asarray(code) < 0] = 0
        return lo

    def first(self, code: Int) -> Int:
        """First event of entity `code` (0 for code -1)."""
        lo = np.searchsorted(self.key, self._base(code), "right").astype(np.int64)
        lo[np.asarray(code) < 0] = 0
        return lo


class WindowAggregation(Protocol):
    """What the driver asks of an aggregation (`aggregation.base.Aggregation`)."""

    def over_windows(
        self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool
    ) -> Any: ...


class WindowDriver:
    """The one window evaluation of many rows: rows (entity code, time) sorted by
    (entity, t) over events indexed by `EventIndex`; each feature's value at each row
    is its aggregation's `over_windows` of the row's window ``[lo, hi)`` in the events
    it takes (`WindowEvents`). Window bounds are found once per (window, hop) and shared
    by the features over it. The online reads (`aggregation.state.evaluate`), training
    sets and the parity check (`offline.historical`) all evaluate through it.

    >>> index = EventIndex.of(np.array([0, 0, 0]), np.array([10.0, 70.0, 130.0]))
    >>> driver = WindowDriver(index, np.array([0, 0]), np.array([130.0, 200.0]))
    >>> lo, hi = driver.bounds((60, 60))
    >>> lo.tolist(), hi.tolist()
    ([1, 2], [3, 3])
    """

    def __init__(self, index: EventIndex, codes: Int, t: Float) -> None:
        self.index, self.codes, self.t = index, codes, t
        self.hi = index.upto(codes, t)
        self._lo: dict[tuple[int, int] | None, Int] = {}
        self._starts: dict[tuple[int, int], Float] = {}

    def window_starts(self, window: tuple[int, int]) -> Float:
        """The start time of each row's window (``floor(t - W, hop)``)."""
        starts = self._starts.get(window)
        if starts is None:
            starts = self._starts[window] = window_starts(self.t, *window)
        return starts

    def bounds(self, window: tuple[int, int] | None) -> tuple[Int, Int]:
        """Each row's window ``[lo, hi)`` in event positions (None: lifetime)."""
        lo = self._lo.get(window)
        if lo is None:
            if window is None:
                lo = self.index.first(self.codes)
            else:
                lo = self.index.since(self.codes, self.window_starts(window))
            self._lo[window] = lo
        return lo, self.hi

    def values(self, aggregation: Any, events: WindowEvents, window: tuple[int, int] | None) -> Any:
        """`aggregation`'s value at each row over its window of `events` (sorted rows)."""
        lo, hi = events.bounds(*self.bounds(window))
        return aggregation.over_windows(events, lo, hi, self.t, lifetime=window is None)


def chunks(lo: Int, hi: Int) -> list[tuple[int, int]]:
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


def gather(lo: Int, hi: Int) -> tuple[Int, Int, npt.NDArray[np.bool_]]:
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


class Gathered(NamedTuple):
    """A chunk of windows with their events end to end (`gathered_chunks`)."""

    rows: slice  # the chunk's windows, as rows of lo and hi
    nonempty: npt.NDArray[np.bool_]  # which of them hold events
    idx: Int  # positions of their events, window after window
    starts: Int  # each non-empty window's first index in `idx`
    counts: Int  # each non-empty window's number of events


def gathered_chunks(lo: Int, hi: Int) -> Iterator[Gathered]:
    """The windows [lo, hi) in chunks of at most `GATHER_BUDGET` events (`chunks`, so
    memory stays linear in events plus windows), each gathered (`gather`); a chunk
    without events is skipped. The loop of every vectorised `over_windows`: a kind
    writes ``out[g.rows][g.nonempty] = <one value per window of g>``.

    >>> [(g.rows, g.idx.tolist(), g.counts.tolist())
    ...  for g in gathered_chunks(np.array([0, 3, 3]), np.array([2, 3, 5]))]
    [(slice(0, 3, None), [0, 1, 3, 4], [2, 2])]
    """
    for a, b in chunks(lo, hi):
        idx, starts, nonempty = gather(lo[a:b], hi[a:b])
        if idx.size:
            yield Gathered(slice(a, b), nonempty, idx, starts, (hi - lo)[a:b][nonempty])


def pick_values(
    values: npt.NDArray[Any], pick: Int, has: npt.NDArray[np.bool_], kind: str | None
) -> Any:
    """`values[pick]` where `has`, else null, in a column type that fits `kind` (the
    schema type: float64 with NaN, nullable Int64 / boolean, objects)."""
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
