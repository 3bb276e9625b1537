"""``decayed_sum``: values exponentially decayed by their age at read time."""

from __future__ import annotations

from feature_service.aggregation.kinds.decayed import Decayed


class DecayedSum(Decayed):
    """``sum(value * 2 ** (-(t - ts) / half_life))`` over non-null values, null for none
    (`Decayed`).

    >>> agg = DecayedSum().bind({"half_life": "1h"})
    >>> agg.finalize(agg.fold([0.0, 3600.0], [0, 1], [8.0, 2.0]), 7200.0)
    3.0
    """

    name = "decayed_sum"
    numeric_only = True
