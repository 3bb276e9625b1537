"""``bottom_k``: the k smallest values (Chronon's ``BOTTOM_K``)."""

from __future__ import annotations

from feature_service.aggregation.kinds.extreme_k import ExtremeK


class BottomK(ExtremeK):
    """The `k` smallest non-null values, smallest first (`ExtremeK`).

    >>> agg = BottomK().bind({"k": 2})
    >>> agg.finalize(agg.fold([0.0] * 4, [0, 1, 2, 3], [5, 9, 1, 9]), 0.0)
    [1.0, 5.0]
    """

    name = "bottom_k"
    _largest = False
