"""``var``: the sample variance (ddof=1) of non-null values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from feature_service.aggregation.base import IR
from feature_service.aggregation.kinds.moments import Moments
from feature_service.aggregation.window_events import Float, Int, WindowEvents


class Var(Moments):
    """Sample variance (ddof=1) of non-null values; None below 2 values.

    IR: ``[n, mean, M2]`` (Welford update, Chan merge).

    >>> agg = Var()
    >>> agg.finalize(agg.fold([1.0, 2.0, 3.0], [0, 1, 2], [1.0, 2.0, 3.0]), 3.0)
    1.0
    >>> agg.finalize(agg.fold([1.0], [0], [5.0]), 1.0) is None
    True
    """

    name = "var"

    def finalize(self, ir: IR, t: float) -> Any:
        return self.variance(ir)

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        return self.sample_variance(events)

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        return self.window_variances(events, lo, hi)
