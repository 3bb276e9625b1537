"""``frequent_k``: the k most frequent values and their counts (Chronon's
``APPROX_HISTOGRAM_K``, here exact)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from feature_service.aggregation.base import IR, Parameter, Proposal
from feature_service.aggregation.kinds.value_counts import ValueCounts


class FrequentK(ValueCounts):
    """A map from each of the `k` most frequent non-null values (as text) to its count,
    most frequent first, ties by the smaller value; null for no events (`ValueCounts`).

    >>> agg = FrequentK().bind({"k": 2})
    >>> ir = agg.fold([0.0] * 5, list(range(5)), ["b", "a", "c", "b", "c"])
    >>> agg.finalize(ir, 0.0)
    {'b': 2, 'c': 2}
    >>> agg.value_type("string").feast, str(agg.value_type("string").arrow)
    ('Map', 'map<string, int64>')
    """

    name = "frequent_k"
    parameters: ClassVar[Mapping[str, Parameter]] = {"k": Parameter("int", 1, 1000, example=3)}
    proposals = (
        Proposal(
            frozenset({"category"}),
            "distribution",
            "The {entity}'s {k} most frequent {column} values in the last {span}, with "
            "their counts.",
            {"k": 3},
            name="top3",
            tier=2,
        ),
    )

    def finalize(self, ir: IR, t: float) -> Any:
        if not ir:
            return None
        return self.labelled(self.ranked(ir)[: self.param("k")])

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        if not events:
            return None
        return self.labelled(self.ranked(self.oracle_counts(events))[: self.param("k")])
