"""The shared IR of ``var`` and ``std``: count, mean and sum of squared deviations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from feature_service.aggregation.base import IR, Aggregation, GroupedEvents
from feature_service.aggregation.numerics import (
    blend,
    finite,
    group_moments,
    ir_order,
    run_moments,
    welford,
)
from feature_service.aggregation.values import is_null, numbers, to_float
from feature_service.aggregation.window_events import (
    Float,
    Int,
    WindowEvents,
    gathered_chunks,
)


class Moments(Aggregation):
    """Count, mean and sum of squared deviations. IR: ``[n, mean, M2]``; ``M2`` (or
    ``mean`` and ``M2``) None once it overflowed."""

    numeric_only = True
    rel_tol = 1e-9

    def empty(self) -> IR:
        return [0, 0.0, 0.0]

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        n, m, m2 = ir
        x = to_float(value)
        if m is None:
            return [n + 1, None, None]
        d = x - m
        m_new = welford(m, n + 1, x)
        m2_new = None if m2 is None else finite(m2 + d * (x - m_new))
        return [n + 1, finite(m_new), m2_new]

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        assert values is not None
        n = 0
        m: float | None = 0.0
        m2: float | None = 0.0
        for x in numbers(values):
            n += 1
            if m is None:
                m2 = None
                continue
            d = x - m
            m_new = welford(m, n, x)
            if m2 is not None:
                m2 = finite(m2 + d * (x - m_new))
            m = finite(m_new)
        return [n, m, m2]

    def merge(self, a: IR, b: IR) -> IR:
        if ir_order(b) < ir_order(a):  # canonical order: merge is exactly commutative
            a, b = b, a
        na, ma, m2a = a
        nb, mb, m2b = b
        if not na:
            return list(b)
        n = na + nb
        if ma is None or mb is None:
            return [n, None, None]
        delta = mb - ma
        mean = finite(blend(ma, na, mb, nb))
        if m2a is None or m2b is None:
            return [n, mean, None]
        return [n, mean, finite((m2a + m2b) + delta * delta * (na * nb / n))]

    def sample_variance(self, events: Sequence[tuple[float, int, Any]]) -> float | None:
        """The contract's sample variance (ddof=1) of `events`' values (the oracle)."""
        if len(events) < 2:
            return None
        return float(np.var(np.asarray([v for _, _, v in events], dtype=np.float64), ddof=1))

    def magnitude(self, values: Sequence[Any]) -> float:
        big = super().magnitude(values)
        return big * big

    def variance(self, ir: IR) -> float | None:
        n, _, m2 = ir
        return max(m2, 0.0) / (n - 1) if n >= 2 and m2 is not None else None

    def window_variances(self, events: WindowEvents, lo: Int, hi: Int) -> Float:
        """Sample variance of each window by the corrected two-pass algorithm (as
        `grouped`); NaN for fewer than two events or an overflowed M2."""
        x = events.floats()
        out = np.full(lo.size, np.nan)
        for g in gathered_chunks(lo, hi):
            idx, starts, counts = g.idx, g.starts, g.counts
            _, m2 = run_moments(x[idx], starts, counts)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[g.rows][g.nonempty] = np.where(
                    (counts >= 2) & np.isfinite(m2), m2 / (counts - 1), np.nan
                )
        return out

    def _grouped(self, events: GroupedEvents) -> list[IR]:
        values, group_ids, n_groups = events.values, events.group_ids, events.n_groups
        out: list[IR] = [[0, 0.0, 0.0]] * n_groups
        assert values is not None
        groups, counts, mean, m2 = group_moments(values, group_ids)
        for g, n, m, s in zip(groups, counts.tolist(), mean.tolist(), m2.tolist(), strict=True):
            mean_g = finite(m)
            out[g] = [n, mean_g, None if mean_g is None else finite(s)]
        return out
