"""``std_gap``: the sample standard deviation of the times between consecutive events."""

from __future__ import annotations

import math
import operator
from bisect import insort
from collections.abc import Sequence
from heapq import merge as merge_sorted
from typing import Any

from feature_service.aggregation.base import IR, Aggregation, Proposal
from feature_service.aggregation.values import is_null


class StdGap(Aggregation):
    """The sample standard deviation (ddof=1) of the gaps, in seconds, between
    consecutive events (with a column, those with a non-null value); null below three
    events (two gaps).

    The gaps of a union of events are not a function of its parts' gaps (events
    interleave), so the IR is the sorted event times themselves: exact, and the value
    is computed from them with correctly rounded sums (`math.fsum`), so it is the
    same bits from any grouping. Windows are read from the retained events; a lifetime
    feature's compacted IR grows with the entity's events (prefer a window).

    >>> agg = StdGap()
    >>> agg.finalize(agg.fold([0.0, 10.0, 30.0], [0, 1, 2], None), 30.0)
    7.0710678118654755
    """

    name = "std_gap"
    proposals = (
        Proposal(
            frozenset({"events"}),
            "recency",
            "Standard deviation of the seconds between the {entity}'s consecutive events "
            "in the last {span}.",
            tier=2,
        ),
    )
    needs_column = False

    def empty(self) -> IR:
        return []

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        out = list(ir)
        insort(out, float(ts))
        return out

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        """The times of the events with a value, sorted (in C)."""
        if values is None:
            return sorted(map(float, ts))
        return sorted(
            [float(t_) for t_, v in zip(ts, values, strict=True) if v is not None and v == v]
        )

    def merge(self, a: IR, b: IR) -> IR:
        return list(merge_sorted(a, b))

    def finalize(self, ir: IR, t: float) -> Any:
        return _std_gap(ir)

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        return _std_gap(sorted(ts for ts, _, _ in events))


def _std_gap(times: Sequence[float]) -> float | None:
    n = len(times) - 1  # gaps
    if n < 2:
        return None
    gaps = list(map(operator.sub, times[1:], times[:-1]))
    mean = math.fsum(gaps) / n
    return math.sqrt(math.fsum([(g - mean) ** 2 for g in gaps]) / (n - 1))
