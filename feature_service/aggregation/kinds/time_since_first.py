"""``time_since_first``: seconds from the earliest event to the query time."""

from __future__ import annotations

from feature_service.aggregation.base import Proposal
from feature_service.aggregation.kinds.time_since import TimeSince


class TimeSinceFirst(TimeSince):
    """``t`` minus the earliest event time (of non-null values, with a column): how long
    an entity has been seen (a lifetime feature: the age of an account, a card, a
    device). IR: float|None.

    >>> agg = TimeSinceFirst()
    >>> agg.finalize(agg.fold([40.0, 10.0], [0, 1], None), 100.0)
    90.0
    """

    name = "time_since_first"
    featuretools = "time_since_first"
    proposals = (
        Proposal(
            frozenset({"events"}),
            "recency",
            "Seconds since the {entity}'s first event.",
            name="secs_since_first_event",
            lifetime=True,
            tier=1,
        ),
    )
    _latest = False
