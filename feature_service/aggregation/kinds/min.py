"""``min``: the smallest non-null value."""

from __future__ import annotations

import numpy as np

from feature_service.aggregation.base import Proposal
from feature_service.aggregation.kinds.extreme import Extreme


class Min(Extreme):
    """Smallest non-null value. IR: float or None.

    >>> agg = Min()
    >>> agg.finalize(agg.fold([1.0, 2.0], [0, 1], [3, -2.5]), 2.0)
    -2.5
    """

    name = "min"
    featuretools = "min"
    proposals = (
        Proposal(
            frozenset({"measure"}),
            "monetary",
            "Smallest {column} among the {entity}'s events in the last {span}.",
            tier=2,
        ),
    )
    _pick = min
    _reduce = np.minimum
    _running = "cummin"
