"""``kurtosis``: the sample excess kurtosis of non-null values, as Chronon's `Kurtosis`
gives it.

The bias-corrected sample excess kurtosis (Apache Commons Math's `Kurtosis`, which
Chronon's tests hold its aggregator to; pandas' ``Series.kurt``; scipy's
``kurtosis(bias=False)``):
``n (n + 1) M4 / ((n - 1) (n - 2) (n - 3) s**4) - 3 (n - 1)**2 / ((n - 2) (n - 3))``
with ``s**2 = M2 / (n - 1)``; null below four values, 0 when the values (nearly) do
not vary (a variance below 1e-19, as Apache's).

IR: ``[n, mean, M2, M3, M4]`` (central moments' sums), updated one value at a time and
merged by Pébay's formulas, as ``skew``'s; None once they overflowed.

`over_windows` (many windows at once: online reads of many rows, training sets) takes
each window's moments by the corrected two-pass algorithm over its gathered values
(`numerics.run_moments`' way, with M3 and M4), within `rel_tol` of the plain fold; a
window of one repeated value has moments exactly 0 (kurtosis 0, as the fold's), and a
window whose M2, M3 or M4 overflows is null, as the fold's IR.

>>> agg = Kurtosis()
>>> values = [1.0, 2.0, 3.0, 10.0, 4.0]
>>> ir = agg.fold([0.0] * 5, [0, 1, 2, 3, 4], values)
>>> events = [(0.0, i, v) for i, v in enumerate(values)]
>>> round(agg.finalize(ir, 0.0), 9), round(agg.oracle(events, 0.0), 9)
(3.152, 3.152)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from feature_service.aggregation.base import IR
from feature_service.aggregation.kinds.higher_moments import HigherMoments
from feature_service.aggregation.numerics import (
    FLAT_VARIANCE,
    finite,
    fsum_or_none,
)
from feature_service.aggregation.values import safe_means
from feature_service.aggregation.window_events import (
    Float,
    Int,
    WindowEvents,
    gathered_chunks,
)


class Kurtosis(HigherMoments):
    """Sample excess kurtosis of non-null values; None below 4 values (module doc)."""

    name = "kurtosis"
    _order = 4

    def finalize(self, ir: IR, t: float) -> Any:
        n, _, m2, _, m4 = ir
        if n < 4 or m2 is None or m4 is None:
            return None
        return _kurtosis(n, m2, m4)

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        xs = [float(v) for _, _, v in events]
        n = len(xs)
        if n < 4:
            return None
        mean = math.fsum(xs) / n
        dev = [x - mean for x in xs]
        m2 = fsum_or_none([d * d for d in dev])
        m4 = fsum_or_none([d * d * d * d for d in dev])
        if m2 is None or m4 is None:
            return None
        return _kurtosis(n, m2, m4)

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        x = events.floats()
        out = np.full(lo.size, np.nan)
        for g in gathered_chunks(lo, hi):
            out[g.rows][g.nonempty] = _window_kurtosis(x[g.idx], g.starts, g.counts)
        return out


def _kurtosis(n: int, m2: float, m4: float) -> float | None:
    variance = max(m2, 0.0) / (n - 1)
    if variance < FLAT_VARIANCE:
        return 0.0
    a = n * (n + 1) * m4 / ((n - 1) * (n - 2) * (n - 3) * variance * variance)
    b = 3.0 * (n - 1) * (n - 1) / ((n - 2) * (n - 3))
    return finite(a - b)


def _window_kurtosis(x: Float, starts: Int, counts: Int) -> Float:
    """Kurtosis of each run ``x[starts[i]:starts[i] + counts[i]]`` (runs end to end, none
    empty), NaN where the fold's is None (below four values, moments overflowed)."""
    with np.errstate(all="ignore"):  # overflow: inf/NaN, made null below
        mean0 = safe_means(x, starts, counts)
        dev = x - np.repeat(mean0, counts)
        flat = np.maximum.reduceat(x, starts) == np.minimum.reduceat(x, starts)
        dev[np.repeat(flat, counts)] = 0.0  # one repeated value: exactly no variation
        d = dev - np.repeat(np.add.reduceat(dev, starts) / counts, counts)
        d2 = d * d
        m2 = np.add.reduceat(d2, starts)
        m3 = np.add.reduceat(d2 * d, starts)
        m4 = np.add.reduceat(d2 * d2, starts)
        n = counts.astype(np.float64)
        variance = np.maximum(m2, 0.0) / (n - 1)
        a = n * (n + 1) * m4 / ((n - 1) * (n - 2) * (n - 3) * variance * variance)
        b = 3.0 * (n - 1) * (n - 1) / ((n - 2) * (n - 3))
        value = np.where(variance < FLAT_VARIANCE, 0.0, a - b)
    ok = (counts >= 4) & np.isfinite(m2) & np.isfinite(m3) & np.isfinite(m4)
    ok &= np.isfinite(mean0) & np.isfinite(value)
    return np.where(ok, value, np.nan)
