"""The shared shape of ``time_since_first`` and ``time_since_last``: the query time
minus an extreme event time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from feature_service.aggregation.base import IR, Aggregation, GroupedEvents
from feature_service.aggregation.numerics import entity_edges, segments
from feature_service.aggregation.values import is_null
from feature_service.aggregation.window_events import Float, Int, WindowEvents


class TimeSince(Aggregation):
    """``t`` minus the earliest (`TimeSinceFirst`) or latest (`TimeSinceLast`) event
    time, of events with a non-null value when it has a column. IR: that time, float,
    or None."""

    needs_column = False
    keeps_witnesses = True
    _latest: ClassVar[bool]

    def _pick(self, a: float, b: float) -> float:
        return max(a, b) if self._latest else min(a, b)

    def empty(self) -> IR:
        return None

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        return float(ts) if ir is None else self._pick(ir, float(ts))

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        kept = (
            ts
            if values is None
            else [t_ for t_, v in zip(ts, values, strict=True) if not is_null(v)]
        )
        if not len(kept):
            return None
        return float(max(kept) if self._latest else min(kept))

    def merge(self, a: IR, b: IR) -> IR:
        if a is None:
            return b
        if b is None:
            return a
        return self._pick(a, b)

    def finalize(self, ir: IR, t: float) -> Any:
        return None if ir is None else t - ir

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        if not events:
            return None
        times = [ts for ts, _, _ in events]
        return t - (max(times) if self._latest else min(times))

    def witnesses(
        self, code: Int, values: npt.NDArray[Any] | None, column_kind: str | None
    ) -> npt.NDArray[np.bool_]:
        """Each entity's first (`TimeSinceFirst`) or last (`TimeSinceLast`) event."""
        return entity_edges(code, last=self._latest)

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        # events are in time order: a window's earliest is its first, its latest its last
        has = hi > lo
        out = np.full(lo.size, np.nan)
        out[has] = t[has] - events.ts[hi[has] - 1 if self._latest else lo[has]]
        return out

    def _grouped(self, events: GroupedEvents) -> list[IR]:
        ts, group_ids, n_groups = events.ts, events.group_ids, events.n_groups
        out: list[IR] = [None] * n_groups
        order, starts, _, groups = segments(group_ids)
        if groups:
            reduce = np.maximum.reduceat if self._latest else np.minimum.reduceat
            for g, v in zip(groups, reduce(ts[order], starts).tolist(), strict=True):
                out[g] = v
        return out
