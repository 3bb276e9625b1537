"""``mean``: the mean of non-null values (Welford update, Chan merge)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from feature_service.aggregation.base import IR, Aggregation, GroupedEvents, Proposal
from feature_service.aggregation.numerics import blend, finite, group_moments, ir_order, welford
from feature_service.aggregation.values import is_null, numbers, safe_means, to_float
from feature_service.aggregation.window_events import Float, Int, WindowEvents


class Mean(Aggregation):
    """Mean of non-null values, Welford update and Chan merge. IR: ``[n, mean]``
    (``mean`` None once it overflowed, which finite values rarely make it do).

    >>> agg = Mean()
    >>> agg.finalize(agg.fold([1.0, 2.0, 3.0], [0, 1, 2], [1.0, 2.0, float("nan")]), 3.0)
    1.5
    """

    name = "mean"
    featuretools = "mean"
    proposals = (
        Proposal(
            frozenset({"measure"}),
            "monetary",
            "Mean {column} of the {entity}'s events in the last {span}.",
        ),
    )
    numeric_only = True
    rel_tol = 1e-9

    def empty(self) -> IR:
        return [0, 0.0]

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        n, m = ir
        x = to_float(value)
        if m is None:
            return [n + 1, None]
        return [n + 1, finite(welford(m, n + 1, x))]

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        assert values is not None
        n = 0
        m: float | None = 0.0
        for x in numbers(values):
            n += 1
            if m is not None:
                m = finite(welford(m, n, x))
        return [n, m]

    def merge(self, a: IR, b: IR) -> IR:
        if ir_order(b) < ir_order(a):  # canonical order: merge is exactly commutative
            a, b = b, a
        na, ma = a[0], a[1]
        nb, mb = b[0], b[1]
        if not na:
            return list(b)
        if ma is None or mb is None:
            return [na + nb, None]
        return [na + nb, finite(blend(ma, na, mb, nb))]

    def finalize(self, ir: IR, t: float) -> Any:
        return float(ir[1]) if ir[0] and ir[1] is not None else None

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        return (
            float(np.mean(np.asarray([v for _, _, v in events], dtype=np.float64)))
            if events
            else None
        )

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        small = events.gathered(lo, hi)
        if small is not None:
            x, starts, nonempty = small
            value = np.full(lo.size, np.nan)
            if x.size:
                value[nonempty] = safe_means(x, starts, (hi - lo)[nonempty])
        else:
            total, scale = events.window_sums(lo, hi)
            with np.errstate(over="ignore"):
                value = np.ldexp(total / np.maximum(hi - lo, 1), scale)
        return np.where((hi > lo) & np.isfinite(value), value, np.nan)

    def _grouped(self, events: GroupedEvents) -> list[IR]:
        values, group_ids, n_groups = events.values, events.group_ids, events.n_groups
        out: list[IR] = [[0, 0.0]] * n_groups
        assert values is not None
        groups, counts, mean, _ = group_moments(values, group_ids)
        for g, n, m in zip(groups, counts.tolist(), mean.tolist(), strict=True):
            out[g] = [n, finite(m)]
        return out
