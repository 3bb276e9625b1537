"""``last``: the value of the latest event."""

from __future__ import annotations

from feature_service.aggregation.kinds.ordered import Ordered


class Last(Ordered):
    """Value of the latest event (greatest ``(ts, seq)``) with a non-null value.

    >>> agg = Last()
    >>> agg.finalize(agg.fold([5.0, 5.0, 1.0], [0, 2, 1], [10, 20, 30]), 5.0)
    20
    """

    name = "last"
    _sign = 1
