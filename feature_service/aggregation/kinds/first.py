"""``first``: the value of the earliest event."""

from __future__ import annotations

from feature_service.aggregation.kinds.ordered import Ordered


class First(Ordered):
    """Value of the earliest event (smallest ``(ts, seq)``) with a non-null value.

    >>> agg = First()
    >>> agg.finalize(agg.fold([5.0, 1.0, 1.0], [0, 2, 1], ["c", "b", "a"]), 5.0)
    'a'
    """

    name = "first"
    _sign = -1
