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

from feature_service.aggregation.base import IR, Aggregation
from feature_service.aggregation.numerics import (
    FLAT_VARIANCE,
    blend,
    finite,
    fsum_or_none,
    ir_order,
    moment_magnitude,
    moment_sums,
    welford,
)
from feature_service.aggregation.values import is_null, safe_means, to_float
from feature_service.aggregation.window_events import Float, Int, WindowEvents, chunks, gather


class Kurtosis(Aggregation):
    """Sample excess kurtosis of non-null values; None below 4 values (module doc)."""

    name = "kurtosis"
    numeric_only = True
    rel_tol = 1e-9

    def empty(self) -> IR:
        return [0, 0.0, 0.0, 0.0, 0.0]

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        n0, m, m2, m3, m4 = ir
        x = to_float(value)
        n = n0 + 1
        if m is None:
            return [n, None, None, None, None]
        delta = x - m
        delta_n = delta / n
        delta_n2 = delta_n * delta_n
        term = delta * delta_n * n0
        m_new = finite(welford(m, n, x))
        if m2 is None or m3 is None or m4 is None or m_new is None:
            return [n, m_new, None, None, None]
        m4_new = finite(
            m4 + term * delta_n2 * (n * n - 3 * n + 3) + 6 * delta_n2 * m2 - 4 * delta_n * m3
        )
        m3_new = finite(m3 + term * delta_n * (n - 2) - 3 * delta_n * m2)
        m2_new = finite(m2 + term)
        if m2_new is None or m3_new is None or m4_new is None:
            return [n, m_new, None, None, None]
        return [n, m_new, m2_new, m3_new, m4_new]

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        """`update`'s arithmetic in one loop (`numerics.moment_sums`): its IR, bit for
        bit; where a sum overflows, `update` itself (its None slots)."""
        assert values is not None
        ir = moment_sums(values, 4)
        return super().fold(ts, seq, values) if ir is None else ir

    def merge(self, a: IR, b: IR) -> IR:
        if ir_order(b) < ir_order(a):  # canonical order: merge is exactly commutative
            a, b = b, a
        na, ma, m2a, m3a, m4a = a
        nb, mb, m2b, m3b, m4b = b
        if not na:
            return list(b)
        n = na + nb
        if ma is None or mb is None:
            return [n, None, None, None, None]
        mean = finite(blend(ma, na, mb, nb))
        if None in (m2a, m2b, m3a, m3b, m4a, m4b) or mean is None:
            return [n, mean, None, None, None]
        delta = mb - ma
        d2 = delta * delta
        m2 = finite(m2a + m2b + d2 * (na * nb / n))
        m3 = finite(
            m3a
            + m3b
            + d2 * delta * (na * nb * (na - nb) / (n * n))
            + 3.0 * delta * (na * m2b - nb * m2a) / n
        )
        m4 = finite(
            m4a
            + m4b
            + d2 * d2 * (na * nb * (na * na - na * nb + nb * nb) / (n * n * n))
            + 6.0 * d2 * (na * na * m2b + nb * nb * m2a) / (n * n)
            + 4.0 * delta * (na * m3b - nb * m3a) / n
        )
        if m2 is None or m3 is None or m4 is None:
            return [n, mean, None, None, None]
        return [n, mean, m2, m3, m4]

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
        for a, b in chunks(lo, hi):
            idx, starts, nonempty = gather(lo[a:b], hi[a:b])
            if idx.size == 0:
                continue
            counts = (hi - lo)[a:b][nonempty]
            out[a:b][nonempty] = _window_kurtosis(x[idx], starts, counts)
        return out

    def magnitude(self, values: Sequence[Any]) -> float:
        return moment_magnitude(values, 4)


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
