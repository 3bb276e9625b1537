"""``skew``: the sample skewness of non-null values, as Chronon's `Skew` gives it.

The bias-corrected sample skewness (Apache Commons Math's `Skewness`, which Chronon's
tests hold its aggregator to; pandas' ``Series.skew``; scipy's ``skew(bias=False)``):
``n / ((n - 1) (n - 2)) * M3 / s**3`` with ``s**2 = M2 / (n - 1)``; null below three
values, 0 when the values (nearly) do not vary (a variance below 1e-19, as Apache's).

IR: ``[n, mean, M2, M3]`` (central moments' sums), updated one value at a time and
merged by Pébay's formulas (Chan's for ``M2``); ``mean``, ``M2`` and ``M3`` None once
they overflowed (`aggregation.numerics`). Every evaluation path folds: `fold` is
`update`'s arithmetic in one loop (`higher_moments.moment_sums`, the same bits), and
`grouped` and `over_windows` are the plain ones over it, so online and training sets
fold a window's events in the same order and give the same bits.

>>> agg = Skew()
>>> values = [1.0, 2.0, 3.0, 10.0]
>>> ir = agg.fold([0.0, 1.0, 2.0, 3.0], [0, 1, 2, 3], values)
>>> events = [(float(i), i, v) for i, v in enumerate(values)]
>>> round(agg.finalize(ir, 3.0), 12), round(agg.oracle(events, 3.0), 12)
(1.763632614804, 1.763632614804)
>>> left = agg.fold([0.0, 1.0], [0, 1], values[:2])
>>> right = agg.fold([2.0, 3.0], [2, 3], values[2:])
>>> agg.matches(agg.finalize(agg.merge(left, right), 3.0), agg.finalize(ir, 3.0))
True
>>> agg.finalize(agg.fold([0.0, 1.0], [0, 1], [1.0, 5.0]), 1.0) is None  # two values
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from feature_service.aggregation.base import IR
from feature_service.aggregation.kinds.higher_moments import HigherMoments
from feature_service.aggregation.numerics import (
    FLAT_VARIANCE,
    finite,
    fsum_or_none,
)


class Skew(HigherMoments):
    """Sample skewness of non-null values; None below 3 values (module doc)."""

    name = "skew"
    _order = 3

    def finalize(self, ir: IR, t: float) -> Any:
        n, _, m2, m3 = ir
        if n < 3 or m2 is None or m3 is None:
            return None
        return _skewness(n, m2, m3)

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        xs = [float(v) for _, _, v in events]
        n = len(xs)
        if n < 3:
            return None
        mean = math.fsum(xs) / n
        dev = [x - mean for x in xs]
        m2 = fsum_or_none([d * d for d in dev])
        m3 = fsum_or_none([d * d * d for d in dev])
        if m2 is None or m3 is None:  # beyond float64, as the IR's None says
            return None
        return _skewness(n, m2, m3)


def _skewness(n: int, m2: float, m3: float) -> float | None:
    variance = max(m2, 0.0) / (n - 1)
    if variance < FLAT_VARIANCE:
        return 0.0
    value = (n / ((n - 1) * (n - 2))) * m3 / (variance * math.sqrt(variance))
    return finite(value)
