"""``max``: the largest non-null value."""

from __future__ import annotations

import numpy as np

from feature_service.aggregation.base import Proposal
from feature_service.aggregation.kinds.extreme import Extreme


class Max(Extreme):
    """Largest non-null value. IR: float or None.

    >>> agg = Max()
    >>> agg.finalize(agg.fold([1.0, 2.0], [0, 1], [3, None]), 2.0)
    3.0
    """

    name = "max"
    featuretools = "max"
    proposals = (
        Proposal(
            frozenset({"measure"}),
            "monetary",
            "Largest {column} among the {entity}'s events in the last {span}.",
            tier=1,
        ),
    )
    _pick = max
    _reduce = np.maximum
    _running = "cummax"
