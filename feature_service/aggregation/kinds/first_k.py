"""``first_k``: the values of the k earliest events, in event order (Chronon/Tecton
``first(n)``, Fennel ``FirstK``)."""

from __future__ import annotations

from feature_service.aggregation.kinds.kept_events import KeptEvents


class FirstK(KeptEvents):
    """The values of the `k` earliest events (smallest ``(ts, seq)``) with a non-null
    value, oldest first; null for no events (`KeptEvents`).

    >>> agg = FirstK().bind({"k": 2})
    >>> agg.finalize(agg.fold([1.0, 5.0, 3.0], [0, 1, 2], ["a", "b", "c"]), 5.0)
    ['a', 'c']
    """

    name = "first_k"
    _latest = False
