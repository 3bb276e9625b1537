"""The shared shape of ``frequent_k`` and ``histogram``: how often each distinct value
occurs, ranked."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from typing import Any

from feature_service.aggregation.base import IR, Aggregation
from feature_service.aggregation.values import distinct_value, is_null, value_key, value_label


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
        assert values is not None
        counts: Counter[Any] = Counter(distinct_value(v) for v in values if not is_null(v))
        return [[v, n] for v, n in sorted(counts.items(), key=lambda e: value_key(e[0]))]

    def merge(self, a: IR, b: IR) -> IR:
        if not a:
            return [list(e) for e in b]
        if not b:
            return [list(e) for e in a]
        counts: dict[Any, int] = {}
        for v, n in (*a, *b):
            counts[v] = counts.get(v, 0) + n
        return [[v, n] for v, n in sorted(counts.items(), key=lambda e: value_key(e[0]))]

    def ranked(self, counts: Sequence[Sequence[Any]]) -> list[tuple[Any, int]]:
        """``(value, count)`` most frequent first, ties by the smaller value."""
        return sorted(((v, n) for v, n in counts), key=lambda e: (-e[1], value_key(e[0])))

    def oracle_counts(self, events: Sequence[tuple[float, int, Any]]) -> list[list[Any]]:
        """The contract's counts: a `collections.Counter` of the distinct values."""
        counts = Counter(distinct_value(v) for _, _, v in events)
        return [[v, n] for v, n in counts.items()]

    def labelled(self, ranked: Sequence[tuple[Any, int]]) -> dict[str, int]:
        return {value_label(v): n for v, n in ranked}
