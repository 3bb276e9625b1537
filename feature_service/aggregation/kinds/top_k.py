"""``top_k``: the k largest values (Chronon's ``TOP_K``)."""

from __future__ import annotations

from feature_service.aggregation.kinds.extreme_k import ExtremeK


class TopK(ExtremeK):
    """The `k` largest non-null values, largest first (`ExtremeK`).

    >>> agg = TopK().bind({"k": 2})
    >>> agg.finalize(agg.fold([0.0] * 4, [0, 1, 2, 3], [5, 9, 1, 9]), 0.0)
    [9.0, 9.0]
    """

    name = "top_k"
    _largest = True
