"""``sum``: the compensated sum of non-null values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from feature_service.aggregation.base import IR, Aggregation, GroupedEvents, Proposal
from feature_service.aggregation.numerics import finite, fsum_or_none, segments
from feature_service.aggregation.values import is_null, numbers, numbers_in, to_float
from feature_service.aggregation.window_events import Float, Int, WindowEvents


class Sum(Aggregation):
    """Sum of non-null values, compensated (Neumaier). IR: ``[n, sum, compensation]``,
    ``sum`` None once it overflowed (module docstring).

    >>> agg = Sum()
    >>> ir = agg.fold([1.0, 2.0, 3.0], [0, 1, 2], [1e16, 1.0, -1e16])
    >>> agg.finalize(ir, 3.0), agg.finalize(agg.empty(), 3.0)
    (1.0, None)
    """

    name = "sum"
    featuretools = "sum"
    proposals = (
        Proposal(
            frozenset({"measure"}),
            "monetary",
            "Sum of {column} over the {entity}'s events in the last {span}.",
        ),
    )
    numeric_only = True
    rel_tol = 1e-9

    def empty(self) -> IR:
        return [0, 0.0, 0.0]

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        n, s, c = ir
        x = to_float(value)
        if s is None or not math.isfinite(total := s + x):
            return [n + 1, None, 0.0]
        c += (s - total) + x if abs(s) >= abs(x) else (x - total) + s
        return [n + 1, total, c]

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        assert values is not None
        n, c = 0, 0.0
        s: float | None = 0.0
        for x in numbers(values):
            n += 1
            if s is None:
                continue
            total = s + x
            if not math.isfinite(total):
                s, c = None, 0.0
                continue
            c += (s - total) + x if abs(s) >= abs(x) else (x - total) + s
            s = total
        return [n, s, c]

    def merge(self, a: IR, b: IR) -> IR:
        if not a[0]:
            return list(b)
        if not b[0]:
            return list(a)
        sa, sb = a[1], b[1]
        if sa is None or sb is None or not math.isfinite(total := sa + sb):
            return [a[0] + b[0], None, 0.0]
        err = (sa - total) + sb if abs(sa) >= abs(sb) else (sb - total) + sa
        return [a[0] + b[0], total, (a[2] + b[2]) + err]

    def finalize(self, ir: IR, t: float) -> Any:
        n, s, c = ir
        if not n or s is None:
            return None
        return finite(s + c)

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        return math.fsum(float(v) for _, _, v in events) if events else None

    def magnitude(self, values: Sequence[Any]) -> float:
        return math.fsum(abs(float(v)) for v in numbers_in(values))

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        small = events.gathered(lo, hi)
        if small is not None:
            x, starts, nonempty = small
            value = np.full(lo.size, np.nan)
            if x.size:
                with np.errstate(over="ignore", invalid="ignore"):
                    value[nonempty] = np.add.reduceat(x, starts)
        else:
            total, scale = events.window_sums(lo, hi)
            with np.errstate(over="ignore"):  # a window sum beyond float64 is null
                value = np.ldexp(total, scale)
        return np.where((hi > lo) & np.isfinite(value), value, np.nan)

    def _grouped(self, events: GroupedEvents) -> list[IR]:
        values, group_ids, n_groups = events.values, events.group_ids, events.n_groups
        out: list[IR] = [[0, 0.0, 0.0]] * n_groups
        assert values is not None
        order, starts, ends, groups = segments(group_ids)
        if not groups:
            return out
        x = values[order]
        with np.errstate(over="ignore", invalid="ignore"):  # overflow: None, below
            sums: list[float] = np.add.reduceat(x, starts).tolist()
        counts: list[int] = (ends - starts).tolist()
        xs: list[float] | None = None
        for g, a, k, s in zip(groups, starts.tolist(), counts, sums, strict=True):
            total: float | None = finite(s)
            if k > 2:  # one or two values: the float sum is already correctly rounded
                if xs is None:
                    xs = x.tolist()
                total = fsum_or_none(xs[a : a + k])
            out[g] = [k, total, 0.0]
        return out
