"""``last_distinct_k``: the k most recent distinct values, newest first (Tecton's
``last_distinct(n)``).

`over_windows` (many windows at once) codes each event's distinct value once
(`value_counts.distinct_classes`), finds each (window, value)'s latest event (events
are in (ts, seq) order: the highest position) and each window's k latest of those by
two sorts: the fold's list, bit for bit. Ints beyond 2**53 take the plain path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from feature_service.aggregation.base import IR
from feature_service.aggregation.kinds.kept_events import EventList
from feature_service.aggregation.kinds.value_counts import distinct_classes, window_classes
from feature_service.aggregation.numerics import in_event_order
from feature_service.aggregation.values import distinct_value, py_scalar, value_key
from feature_service.aggregation.window_events import Float, Int, WindowEvents, chunks


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

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        """Events in ``(ts, seq)`` order (`numerics.in_event_order`, as the online path
        passes them): walked from the newest until k distinct values are met, `_kept`'s
        IR without a sort; else `EventList.fold`."""
        assert values is not None
        if not in_event_order(ts, seq):
            return super().fold(ts, seq, values)
        k = self.param("k")
        # keyed by the value itself: Python equality (1 == 1.0 == True, strings apart)
        # is `distinct_value`'s, so each value's first position here is its newest
        newest: dict[Any, int] = {}
        for i in range(len(values) - 1, -1, -1):
            v = values[i]
            if v is not None and v == v and v not in newest:
                newest[v] = i
                if len(newest) == k:
                    break
        return [[float(ts[i]), int(seq[i]), py_scalar(values[i])] for i in newest.values()]

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        if distinct_classes(events) is None:
            return super().over_windows(events, lo, hi, t, lifetime)
        assert events.values is not None
        out: list[Any] = [None] * lo.size
        for a, b in chunks(lo, hi):  # memory bounded by GATHER_BUDGET events
            gathered = window_classes(events, lo[a:b], hi[a:b])
            assert gathered is not None
            rows, window, code, idx, value_of = gathered
            key = window * max(len(value_of), 1) + code
            order = np.lexsort((idx, key))
            key, window, idx = key[order], window[order], idx[order]
            latest = np.ones(key.size, dtype=np.bool_)  # each (window, value)'s latest event
            latest[:-1] = key[1:] != key[:-1]
            window, idx = window[latest], idx[latest]
            order = np.lexsort((-idx, window))  # each window's newest first
            window, idx = window[order], idx[order]
            starts = np.searchsorted(window, np.arange(len(rows) + 1, dtype=np.int64))
            kept = np.arange(window.size) - starts[window] < self.param("k")
            window, idx = window[kept], idx[kept]
            cuts = np.searchsorted(window, np.arange(len(rows) + 1, dtype=np.int64)).tolist()
            values = [py_scalar(v) for v in events.values[idx].tolist()]
            for w, row in enumerate(rows):
                out[a + row] = values[cuts[w] : cuts[w + 1]] or None
        return self.window_column(out, events.kind)

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        out: list[Any] = []
        seen: set[Any] = set()
        for _, _, v in sorted(events, key=lambda e: (e[0], e[1]), reverse=True):
            if distinct_value(v) not in seen:
                seen.add(distinct_value(v))
                out.append(v)
        return out[: self.param("k")] or None
