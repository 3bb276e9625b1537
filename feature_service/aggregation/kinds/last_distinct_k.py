"""``last_distinct_k``: the k most recent distinct values, newest first (Tecton's
``last_distinct(n)``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from feature_service.aggregation.kinds.kept_events import EventList
from feature_service.aggregation.values import distinct_value, value_key


def _newest_first(event: Sequence[Any]) -> tuple[Any, ...]:
    return (-event[0], -event[1], value_key(event[2]))


class LastDistinctK(EventList):
    """The `k` distinct non-null values whose latest events are the latest, newest
    first (1 and 1.0 are one value, as in ``count_distinct``; each shown as its latest
    event has it); null for none.

    IR: for each of those values its latest event ``[ts, seq, value]``, newest first. A
    value among the k newest of a union has its latest event in one part, where fewer
    than k values are newer, so it is among that part's k: the IR is bounded by k and
    merges exactly in any grouping.

    >>> agg = LastDistinctK().bind({"k": 2})
    >>> agg.finalize(agg.fold([1.0, 2.0, 3.0, 4.0], [0, 1, 2, 3], ["a", "b", "a", "c"]), 4.0)
    ['c', 'a']
    """

    name = "last_distinct_k"

    def _kept(self, events: Sequence[Sequence[Any]]) -> list[Any]:
        latest: dict[Any, list[Any]] = {}
        for e in sorted(events, key=_newest_first):
            latest.setdefault(value_key(distinct_value(e[2])), list(e))
        return sorted(latest.values(), key=_newest_first)[: self.param("k")]

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        out: list[Any] = []
        seen: set[Any] = set()
        for _, _, v in sorted(events, key=lambda e: (e[0], e[1]), reverse=True):
            if distinct_value(v) not in seen:
                seen.add(distinct_value(v))
                out.append(v)
        return out[: self.param("k")] or None
