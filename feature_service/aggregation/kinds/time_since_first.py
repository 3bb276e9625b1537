"""``time_since_first``: seconds from the earliest event to the query time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from feature_service.aggregation.base import IR, Aggregation, GroupedEvents, Proposal
from feature_service.aggregation.numerics import entity_edges, segments
from feature_service.aggregation.values import is_null
from feature_service.aggregation.window_events import Float, Int, WindowEvents


class TimeSinceFirst(Aggregation):
    """``t`` minus the earliest event time (of non-null values, with a column): how long
    an entity has been seen (a lifetime feature: the age of an account, a card, a
    device). IR: float|None.

    >>> agg = TimeSinceFirst()
    >>> agg.finalize(agg.fold([40.0, 10.0], [0, 1], None), 100.0)
    90.0
    """

    name = "time_since_first"
    featuretools = "time_since_first"
    proposals = (
        Proposal(
            frozenset({"events"}),
            "recency",
            "Seconds since the {entity}'s first event.",
            name="secs_since_first_event",
            lifetime=True,
            tier=1,
        ),
    )
    needs_column = False
    keeps_witnesses = True

    def empty(self) -> IR:
        return None

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        ts = float(ts)
        return ts if ir is None or ts < ir else ir

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        if values is None:
            return float(min(ts)) if len(ts) else None
        kept = [t_ for t_, v in zip(ts, values, strict=True) if not is_null(v)]
        return float(min(kept)) if kept else None

    def merge(self, a: IR, b: IR) -> IR:
        if a is None:
            return b
        if b is None:
            return a
        return min(a, b)

    def finalize(self, ir: IR, t: float) -> Any:
        return None if ir is None else t - ir

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        return t - min(ts for ts, _, _ in events) if events else None

    def witnesses(
        self, code: Int, values: npt.NDArray[Any] | None, column_kind: str | None
    ) -> npt.NDArray[np.bool_]:
        """Each entity's first event."""
        return entity_edges(code, last=False)

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        # events are in time order: a window's earliest is its first
        has = hi > lo
        out = np.full(lo.size, np.nan)
        out[has] = t[has] - events.ts[lo[has]]
        return out

    def _grouped(self, events: GroupedEvents) -> list[IR]:
        ts, group_ids, n_groups = events.ts, events.group_ids, events.n_groups
        out: list[IR] = [None] * n_groups
        order, starts, _, groups = segments(group_ids)
        if groups:
            earliest = np.minimum.reduceat(ts[order], starts)
            for g, v in zip(groups, earliest.tolist(), strict=True):
                out[g] = v
        return out
