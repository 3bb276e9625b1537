"""``std``: the sample standard deviation (ddof=1) of non-null values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from feature_service.aggregation.base import IR, Proposal
from feature_service.aggregation.kinds.moments import Moments
from feature_service.aggregation.window_events import Float, Int, WindowEvents


class Std(Moments):
    """Sample standard deviation (ddof=1) of non-null values; None below 2 values.

    IR: ``[n, mean, M2]`` (Welford update, Chan merge).

    >>> agg = Std()
    >>> agg.finalize(agg.fold([1.0, 2.0, 3.0], [0, 1, 2], [2.0, 4.0, 6.0]), 3.0)
    2.0
    """

    name = "std"
    featuretools = "std"
    proposals = (
        Proposal(
            frozenset({"measure"}),
            "monetary",
            "Standard deviation of {column} over the {entity}'s events in the last {span}.",
            tier=2,
        ),
    )

    def finalize(self, ir: IR, t: float) -> Any:
        var = self.variance(ir)
        return None if var is None else math.sqrt(var)

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        var = self.sample_variance(events)
        return None if var is None else math.sqrt(var)

    def matches(self, actual: Any, expected: Any, magnitude: float = 1.0) -> bool:
        """Compared as variances: a standard deviation near zero is the square root of a
        variance near zero by cancellation, where no relative tolerance can hold."""
        if actual is None or expected is None:
            return actual is None and expected is None
        return super().matches(actual * actual, expected * expected, magnitude)

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        return np.sqrt(self.window_variances(events, lo, hi))
