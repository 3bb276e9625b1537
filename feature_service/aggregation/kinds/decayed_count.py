"""``decayed_count``: events exponentially decayed by their age at read time."""

from __future__ import annotations

from typing import Any

from feature_service.aggregation.kinds.decayed import Decayed


class DecayedCount(Decayed):
    """``sum(2 ** (-(t - ts) / half_life))`` over events (with a column, its non-null
    values): 0.0 for none, as a count (`Decayed`).

    >>> agg = DecayedCount().bind({"half_life": 60})
    >>> agg.finalize(agg.fold([0.0, 60.0], [0, 1], None), 120.0)
    0.75
    """

    name = "decayed_count"
    needs_column = False
    _counted = True

    def empty_result(self) -> Any:
        return 0.0
