"""The shared shape of ``frequent_k`` and ``histogram``: how often each distinct value
occurs, ranked.

`over_windows` (many windows at once) codes each event's distinct value once
(`distinct_classes`: codes in the IR's value order), counts each (window, code) with one
`numpy.unique`, and gives each window `finalize` of the IR those counts are, the fold's
bit for bit. A column holding integers beyond 2**53 (which the IR keeps as ints, equal
to floats of another type) takes the plain path.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Collection, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from feature_service.aggregation.base import IR, Aggregation
from feature_service.aggregation.values import distinct_value, is_null, value_key, value_label
from feature_service.aggregation.window_events import Float, Int, WindowEvents, chunks, gather


def distinct_classes(events: WindowEvents) -> tuple[Int, list[Any]] | None:
    """Each event's distinct value (`values.distinct_value`) as a code, codes numbered in
    `values.value_key` order, and the value of each code; None where a value is an int
    beyond 2**53 (cached)."""
    if "distinct_classes" not in events.cache:
        assert events.values is not None
        codes, uniques = pd.factorize(events.values)
        reps = [distinct_value(u) for u in uniques.tolist()]
        found: tuple[Int, list[Any]] | None = None
        if not any(isinstance(c, int) for c in reps):
            classes = sorted({value_key(c): c for c in reps}.items())
            number = {key: i for i, (key, _) in enumerate(classes)}
            of_unique = np.array([number[value_key(c)] for c in reps], dtype=np.int64)
            found = of_unique[np.asarray(codes, dtype=np.int64)], [c for _, c in classes]
        events.cache["distinct_classes"] = found
    out: tuple[Int, list[Any]] | None = events.cache["distinct_classes"]
    return out


def window_classes(
    events: WindowEvents, lo: Int, hi: Int
) -> tuple[list[int], Int, Int, Int, list[Any]] | None:
    """The events of windows ``[lo, hi)`` gathered end to end (`gather`): the row of each
    non-empty window, the window number (among them) and class code (`distinct_classes`)
    of each event, each event's position in the events, and the value of each code;
    None: the plain path."""
    classes = distinct_classes(events)
    if classes is None:
        return None
    idx, _, nonempty = gather(lo, hi)
    counts = (hi - lo)[nonempty]
    window = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    return np.flatnonzero(nonempty).tolist(), window, classes[0][idx], idx, classes[1]


def in_value_order(values: Collection[Any]) -> list[Any]:
    """Distinct values (`values.distinct_value`) sorted by `values.value_key`: compared
    as they are (in C) when all are strings or all numbers, the order that key gives.

    >>> in_value_order(["b", "a"]), in_value_order([2.0, 1.0]), in_value_order(["a", 2.0])
    (['a', 'b'], [1.0, 2.0], [2.0, 'a'])
    """
    kinds = set(map(type, values))
    if kinds <= {str} or kinds <= {float, int}:
        return sorted(values)
    return sorted(values, key=value_key)


class ValueCounts(Aggregation):
    """The count of each distinct non-null value (1 and 1.0 are one, as in
    ``count_distinct``). IR: ``[[value, count], ...]`` sorted by value (numbers before
    strings): exact, so merge is exactly commutative and associative and the value is
    the same bits from any grouping of the events.

    The IR holds every distinct value of the events (not k of them): the k most
    frequent of a union are not found from the k most frequent of its parts. Online
    windows are read from the retained events; only a lifetime feature keeps this IR
    (its compacted events' counts), bounded by the column's distinct values.

    The value is a map from each value's text (`values.value_label`) to its count,
    most frequent first, ties by the smaller value (`rank`).
    """

    output = "map"
    compacted = "hops"  # a suffix of hops would repeat every value in every suffix

    def empty(self) -> IR:
        return []

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        c = distinct_value(value)
        key = value_key(c)
        i = bisect_left(ir, key, key=lambda e: value_key(e[0]))
        if i < len(ir) and value_key(ir[i][0]) == key:
            return [*ir[:i], [ir[i][0], ir[i][1] + 1], *ir[i + 1 :]]
        return [*ir[:i], [c, 1], *ir[i:]]

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        """The values counted as they are (`collections.Counter`, in C), then each
        value's count under its `distinct_value`: Python equality (1 == 1.0 == True,
        strings apart) is `distinct_value`'s, and the first of equal values is kept, as
        `update` keeps it."""
        assert values is not None
        counts: dict[Any, int] = {}
        for v, n in Counter(values).items():
            if v is not None and v == v:
                c = distinct_value(v)
                counts[c] = counts.get(c, 0) + n
        return [[v, counts[v]] for v in in_value_order(counts)]

    def merge(self, a: IR, b: IR) -> IR:
        if not a:
            return [list(e) for e in b]
        if not b:
            return [list(e) for e in a]
        counts: dict[Any, int] = {}
        for v, n in (*a, *b):
            counts[v] = counts.get(v, 0) + n
        return [[v, counts[v]] for v in in_value_order(counts)]

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        if distinct_classes(events) is None:
            return super().over_windows(events, lo, hi, t, lifetime)
        t_list = t.tolist()
        out: list[Any] = [self.finalize([], t_) for t_ in t_list]
        for a, b in chunks(lo, hi):  # memory bounded by GATHER_BUDGET events
            gathered = window_classes(events, lo[a:b], hi[a:b])
            assert gathered is not None
            rows, window, code, _, value_of = gathered
            n_codes = max(len(value_of), 1)
            keys, counts = np.unique(window * n_codes + code, return_counts=True)
            ends = np.arange(len(rows) + 1, dtype=np.int64) * n_codes
            cuts = np.searchsorted(keys, ends).tolist()
            pairs = [
                [value_of[c], n]
                for c, n in zip((keys % n_codes).tolist(), counts.tolist(), strict=True)
            ]
            for w, row in enumerate(rows):
                out[a + row] = self.finalize(pairs[cuts[w] : cuts[w + 1]], t_list[a + row])
        return self.window_column(out, events.kind)

    def ranked(self, counts: Sequence[Sequence[Any]]) -> list[tuple[Any, int]]:
        """``(value, count)`` most frequent first, ties by the smaller value, of `counts`
        in value order (an IR's): a stable sort by count alone keeps that order."""
        return [(v, n) for v, n in sorted(counts, key=itemgetter(1), reverse=True)]

    def oracle_counts(self, events: Sequence[tuple[float, int, Any]]) -> list[list[Any]]:
        """The contract's counts: a `collections.Counter` of the distinct values, in
        value order."""
        counts = Counter(distinct_value(v) for _, _, v in events)
        return [[v, n] for v, n in sorted(counts.items(), key=lambda e: value_key(e[0]))]

    def labelled(self, ranked: Sequence[tuple[Any, int]]) -> dict[str, int]:
        return {value_label(v): n for v, n in ranked}
