"""``time_since_last``: seconds from the latest event to the query time."""

from __future__ import annotations

from feature_service.aggregation.base import Proposal
from feature_service.aggregation.kinds.time_since import TimeSince


class TimeSinceLast(TimeSince):
    """``t`` minus the latest event time (of non-null values, with a column). IR: float|None.

    >>> agg = TimeSinceLast()
    >>> agg.finalize(agg.fold([10.0, 40.0], [0, 1], None), 100.0)
    60.0
    """

    name = "time_since_last"
    featuretools = "time_since_last"
    proposals = (
        Proposal(
            frozenset({"events"}),
            "recency",
            "Seconds since the {entity}'s most recent event.",
            name="secs_since_last_event",
            lifetime=True,
        ),
    )
    _latest = True
