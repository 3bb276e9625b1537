"""``last_k``: the values of the k latest events, in event order (Chronon/Tecton
``last(n)``, Fennel ``LastK``)."""

from __future__ import annotations

from feature_service.aggregation.kinds.kept_events import KeptEvents


class LastK(KeptEvents):
    """The values of the `k` latest events (greatest ``(ts, seq)``) with a non-null
    value, oldest first; null for no events (`KeptEvents`).

    >>> agg = LastK().bind({"k": 2})
    >>> agg.finalize(agg.fold([1.0, 5.0, 3.0], [0, 1, 2], [10.0, 20.0, 30.0]), 5.0)
    [30.0, 20.0]
    >>> agg.value_type("float").feast
    'Array(Float64)'
    """

    name = "last_k"
    _latest = True
