"""``histogram``: the count of each value, at most k of them, the rest as ``__other__``
(Chronon's ``HISTOGRAM``, bounded)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

from feature_service.aggregation.base import IR, Parameter
from feature_service.aggregation.kinds.value_counts import ValueCounts

OTHER: Final[str] = "__other__"
"""The key of the events whose values are not among the k kept."""


class Histogram(ValueCounts):
    """A map from non-null values (as text) to their counts: the `k` most frequent
    (ties by the smaller value), then ``__other__`` with the count of every other event
    when there are more than k distinct values; null for no events (`ValueCounts`).

    >>> agg = Histogram().bind({"k": 2})
    >>> agg.finalize(agg.fold([0.0] * 5, list(range(5)), [3, 1, 3, 2, 5]), 0.0)
    {'3': 2, '1': 1, '__other__': 2}
    """

    name = "histogram"
    parameters: ClassVar[Mapping[str, Parameter]] = {"k": Parameter("int", 1, 10_000, example=3)}

    def _value(self, counts: Sequence[Sequence[Any]]) -> dict[str, int] | None:
        if not counts:
            return None
        ranked = self.ranked(counts)
        k = self.param("k")
        out = self.labelled(ranked[:k])
        rest = sum(n for _, n in ranked[k:])
        if rest:
            out[OTHER] = out.get(OTHER, 0) + rest
        return out

    def finalize(self, ir: IR, t: float) -> Any:
        return self._value(ir)

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        return self._value(self.oracle_counts(events))
