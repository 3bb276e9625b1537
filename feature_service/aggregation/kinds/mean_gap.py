"""``mean_gap``: the mean time between consecutive events, in seconds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from feature_service.aggregation.base import IR, Aggregation, Proposal
from feature_service.aggregation.values import is_null
from feature_service.aggregation.window_events import Float, Int, WindowEvents


class MeanGap(Aggregation):
    """The mean of the gaps between consecutive events (with a column, those with a
    non-null value), in seconds; null below two events.

    The gaps of events at ``t_1 <= ... <= t_n`` add up to ``t_n - t_1``, so their mean
    is ``(t_n - t_1) / (n - 1)``. IR: ``[n, first, last]`` (times None for no events):
    exact, merged in any grouping to the same bits; a lifetime value over compacted
    events is kept in it, three numbers per entity.

    >>> agg = MeanGap()
    >>> agg.finalize(agg.fold([10.0, 40.0, 100.0], [0, 1, 2], None), 100.0)
    45.0
    """

    name = "mean_gap"
    featuretools = "avg_time_between"
    proposals = (
        Proposal(
            frozenset({"events"}),
            "recency",
            "Mean seconds between the {entity}'s consecutive events in the last {span}.",
            tier=1,
        ),
    )
    needs_column = False

    def empty(self) -> IR:
        return [0, None, None]

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        n, first, last = ir
        ts = float(ts)
        if n == 0:
            return [1, ts, ts]
        return [n + 1, min(first, ts), max(last, ts)]

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        """The count, earliest and latest time of the events with a value, each in one
        pass in C (`min` and `max` keep the first of equal times, as `update` does)."""
        times = (
            ts
            if values is None
            else [t_ for t_, v in zip(ts, values, strict=True) if v is not None and v == v]
        )
        if not len(times):
            return self.empty()
        return [len(times), float(min(times)), float(max(times))]

    def merge(self, a: IR, b: IR) -> IR:
        if a[0] == 0:
            return list(b)
        if b[0] == 0:
            return list(a)
        return [a[0] + b[0], min(a[1], b[1]), max(a[2], b[2])]

    def finalize(self, ir: IR, t: float) -> Any:
        n, first, last = ir
        return None if n < 2 else (last - first) / (n - 1)

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        # events are in time order: a window's first and last are lo and hi - 1, and
        # the arithmetic is `finalize`'s, so the bits are the plain path's
        n = hi - lo
        out = np.full(lo.size, np.nan)
        has = n >= 2
        out[has] = (events.ts[hi[has] - 1] - events.ts[lo[has]]) / (n[has] - 1)
        return out

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        times = sorted(ts for ts, _, _ in events)
        if len(times) < 2:
            return None
        return (times[-1] - times[0]) / (len(times) - 1)  # the gaps' sum telescopes
