"""The shared IR of ``skew`` and ``kurtosis``: count, mean and the sums of the central
moments' powers up to the third or the fourth."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Final

from feature_service.aggregation.base import IR, Aggregation
from feature_service.aggregation.numerics import (
    blend,
    finite,
    ir_order,
    moment_magnitude,
    welford,
)
from feature_service.aggregation.values import is_null, numbers, to_float

MOMENT_SUMS_MAX: Final[int] = 1 << 26
"""`moment_sums` takes fewer values than this: its counts are floats, exact (and their
squares too) below it."""


def moment_sums(values: Sequence[Any], order: int) -> list[Any] | None:
    """The IR ``[n, mean, M2, M3]`` (`order` 3, ``skew``'s) or ``[n, mean, M2, M3, M4]``
    (4, ``kurtosis``') of the non-null `values` by `HigherMoments.update`'s one value at
    a time arithmetic in one loop: the same float operations in the same order, unchecked. A
    sum that overflows stays inf or NaN (each is a term of its own next value), so an
    all-finite result is `update`'s IR, bit for bit; None otherwise (`update` gives
    None slots there) and for `MOMENT_SUMS_MAX` values or more.

    >>> moment_sums([1.0, 2.0, None, 3.0, 10.0], 4)
    [4, 4.0, 50.0, 180.0, 1394.0]
    >>> moment_sums([1e200, -1e200, 1e200], 3) is None
    True
    """
    if len(values) >= MOMENT_SUMS_MAX:
        return None
    fourth = order == 4
    n, m, m2, m3, m4 = 0.0, 0.0, 0.0, 0.0, 0.0  # n a float: `update`'s int, converted
    for x in numbers(values):
        n0 = n
        n += 1.0
        delta = x - m
        delta_n = delta / n
        term = delta * delta_n * n0
        m = m + delta_n  # `welford` where it does not overflow
        if fourth:
            delta_n2 = delta_n * delta_n
            m4 = (
                m4
                + term * delta_n2 * (n * n - 3.0 * n + 3.0)
                + 6.0 * delta_n2 * m2
                - 4.0 * delta_n * m3
            )
        m3 = m3 + term * delta_n * (n - 2.0) - 3.0 * delta_n * m2
        m2 = m2 + term
    sums = [m, m2, m3, m4] if fourth else [m, m2, m3]
    return [int(n), *sums] if all(map(math.isfinite, sums)) else None


class HigherMoments(Aggregation):
    """IR ``[n, mean, M2, M3]`` (`_order` 3, ``skew``) or ``[n, mean, M2, M3, M4]``
    (4, ``kurtosis``): central moments' sums, updated one value at a time and merged by
    Pébay's formulas (Chan's for ``M2``); the sums (and the mean) None once they
    overflowed. `fold` is `update`'s arithmetic in one loop (`moment_sums`, the
    same bits)."""

    numeric_only = True
    rel_tol = 1e-9
    _order: ClassVar[int]

    def empty(self) -> IR:
        return [0, *[0.0] * self._order]

    def _overflowed(self, n: int, mean: float | None) -> IR:
        return [n, mean, *[None] * (self._order - 1)]

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        n0, m, m2, m3 = ir[:4]
        m4 = ir[4] if self._order == 4 else 0.0
        x = to_float(value)
        n = n0 + 1
        if m is None:
            return self._overflowed(n, None)
        delta = x - m
        delta_n = delta / n
        term = delta * delta_n * n0
        m_new = finite(welford(m, n, x))
        if m2 is None or m3 is None or m4 is None or m_new is None:
            return self._overflowed(n, m_new)
        m3_new = finite(m3 + term * delta_n * (n - 2) - 3 * delta_n * m2)
        m2_new = finite(m2 + term)
        if self._order == 3:
            return [n, m_new, m2_new, None if m2_new is None else m3_new]
        delta_n2 = delta_n * delta_n
        m4_new = finite(
            m4 + term * delta_n2 * (n * n - 3 * n + 3) + 6 * delta_n2 * m2 - 4 * delta_n * m3
        )
        if m2_new is None or m3_new is None or m4_new is None:
            return self._overflowed(n, m_new)
        return [n, m_new, m2_new, m3_new, m4_new]

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        """`update`'s arithmetic in one loop (`moment_sums`): its IR, bit for
        bit; where a sum overflows, `update` itself (its None slots)."""
        assert values is not None
        ir = moment_sums(values, self._order)
        return super().fold(ts, seq, values) if ir is None else ir

    def merge(self, a: IR, b: IR) -> IR:
        if ir_order(b) < ir_order(a):  # canonical order: merge is exactly commutative
            a, b = b, a
        na, ma, m2a, m3a = a[:4]
        nb, mb, m2b, m3b = b[:4]
        m4a = a[4] if self._order == 4 else 0.0
        m4b = b[4] if self._order == 4 else 0.0
        if not na:
            return list(b)
        n = na + nb
        if ma is None or mb is None:
            return self._overflowed(n, None)
        mean = finite(blend(ma, na, mb, nb))
        if None in (m2a, m2b, m3a, m3b, m4a, m4b) or mean is None:
            return self._overflowed(n, mean)
        delta = mb - ma
        d2 = delta * delta
        m2 = finite(m2a + m2b + d2 * (na * nb / n))
        m3 = finite(
            m3a
            + m3b
            + d2 * delta * (na * nb * (na - nb) / (n * n))
            + 3.0 * delta * (na * m2b - nb * m2a) / n
        )
        if self._order == 3:
            return [n, mean, m2, None if m2 is None else m3]
        m4 = finite(
            m4a
            + m4b
            + d2 * d2 * (na * nb * (na * na - na * nb + nb * nb) / (n * n * n))
            + 6.0 * d2 * (na * na * m2b + nb * nb * m2a) / (n * n)
            + 4.0 * delta * (na * m3b - nb * m3a) / n
        )
        if m2 is None or m3 is None or m4 is None:
            return self._overflowed(n, mean)
        return [n, mean, m2, m3, m4]

    def magnitude(self, values: Sequence[Any]) -> float:
        return moment_magnitude(values, self._order)
