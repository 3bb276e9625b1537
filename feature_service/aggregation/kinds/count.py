"""``count``: the number of events (no column) or of non-null values (with a column)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from feature_service.aggregation.base import IR, Aggregation, GroupedEvents, Proposal
from feature_service.aggregation.values import is_null
from feature_service.aggregation.window_events import Float, Int, WindowEvents


class Count(Aggregation):
    """Number of events (no column) or of non-null values (with a column). IR: int.

    >>> agg = Count()
    >>> ir = agg.fold([1.0, 2.0, 3.0], [0, 1, 2], [5.0, None, 7.0])
    >>> ir, agg.finalize(ir, 3.0), agg.finalize(agg.empty(), 3.0)
    (2, 2, 0)
    """

    name = "count"
    featuretools = "count"
    proposals = (
        Proposal(frozenset({"events"}), "frequency", "Events of the {entity} in the last {span}."),
    )
    needs_column = False
    output = "int"

    def empty(self) -> IR:
        return 0

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        return ir if is_null(value) else ir + 1

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        if values is None:
            return len(ts)
        return sum(1 for v in values if v is not None and v == v)

    def merge(self, a: IR, b: IR) -> IR:
        return a + b

    def finalize(self, ir: IR, t: float) -> Any:
        return int(ir)

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        return len(events)

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        return hi - lo

    def _grouped(self, events: GroupedEvents) -> list[IR]:
        group_ids, n_groups = events.group_ids, events.n_groups
        counts: list[int] = np.bincount(group_ids, minlength=n_groups).tolist()
        return counts
