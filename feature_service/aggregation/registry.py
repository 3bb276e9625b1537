"""The one table from an aggregation's YAML name to its class (`aggregation.kinds`).

Adding an aggregation is one file in `aggregation/kinds/` and one line here; the
definitions' validation, the registry's expansion, the export, the parity check, the
online state and the test oracle all ask the class.

>>> sorted(AGGREGATIONS)  # doctest: +NORMALIZE_WHITESPACE
['approx_count_distinct', 'approx_percentile', 'bottom_k', 'count', 'count_distinct',
 'decayed_count', 'decayed_sum', 'first', 'first_k', 'frequent_k', 'histogram', 'kurtosis',
 'last', 'last_distinct_k', 'last_k', 'max', 'mean', 'mean_gap', 'min', 'skew', 'std',
 'std_gap', 'sum', 'time_since_first', 'time_since_last', 'top_k', 'var']
>>> aggregation("sum").fold([1.0, 2.0], [0, 1], [1.7e308, 1.7e308])
[2, None, 0.0]
>>> aggregation("median")
Traceback (most recent call last):
...
ValueError: unknown aggregation 'median'; use one of approx_count_distinct, ...
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from feature_service.aggregation.base import ROLES, Aggregation, Proposal
from feature_service.aggregation.kinds.approx_count_distinct import ApproxCountDistinct
from feature_service.aggregation.kinds.approx_percentile import ApproxPercentile
from feature_service.aggregation.kinds.bottom_k import BottomK
from feature_service.aggregation.kinds.count import Count
from feature_service.aggregation.kinds.count_distinct import CountDistinct
from feature_service.aggregation.kinds.decayed_count import DecayedCount
from feature_service.aggregation.kinds.decayed_sum import DecayedSum
from feature_service.aggregation.kinds.first import First
from feature_service.aggregation.kinds.first_k import FirstK
from feature_service.aggregation.kinds.frequent_k import FrequentK
from feature_service.aggregation.kinds.histogram import Histogram
from feature_service.aggregation.kinds.kurtosis import Kurtosis
from feature_service.aggregation.kinds.last import Last
from feature_service.aggregation.kinds.last_distinct_k import LastDistinctK
from feature_service.aggregation.kinds.last_k import LastK
from feature_service.aggregation.kinds.max import Max
from feature_service.aggregation.kinds.mean import Mean
from feature_service.aggregation.kinds.mean_gap import MeanGap
from feature_service.aggregation.kinds.min import Min
from feature_service.aggregation.kinds.skew import Skew
from feature_service.aggregation.kinds.std import Std
from feature_service.aggregation.kinds.std_gap import StdGap
from feature_service.aggregation.kinds.sum import Sum
from feature_service.aggregation.kinds.time_since_first import TimeSinceFirst
from feature_service.aggregation.kinds.time_since_last import TimeSinceLast
from feature_service.aggregation.kinds.top_k import TopK
from feature_service.aggregation.kinds.var import Var

AGGREGATIONS: Final[Mapping[str, Aggregation]] = {
    kind.name: kind
    for kind in (
        Count(),
        Sum(),
        Mean(),
        Min(),
        Max(),
        Std(),
        Var(),
        First(),
        Last(),
        CountDistinct(),
        TimeSinceLast(),
        TimeSinceFirst(),
        Skew(),
        Kurtosis(),
        LastK(),
        FirstK(),
        LastDistinctK(),
        TopK(),
        BottomK(),
        FrequentK(),
        Histogram(),
        ApproxCountDistinct(),
        ApproxPercentile(),
        MeanGap(),
        StdGap(),
        DecayedSum(),
        DecayedCount(),
    )
}
"""Every aggregation by its YAML name, unbound: a feature's is bound to its
parameters (`Aggregation.bind`, `aggregation.spec.aggregation_of`)."""


def aggregation(name: str) -> Aggregation:
    """The aggregation called `name`; ValueError naming the known ones otherwise."""
    found = AGGREGATIONS.get(name)
    if found is None:
        raise ValueError(
            f"unknown aggregation {name!r}; use one of {', '.join(sorted(AGGREGATIONS))}"
        )
    return found


def proposed(role: str | None = None) -> list[tuple[Aggregation, Proposal]]:
    """What `generate` proposes (`Aggregation.proposals`), in registry order: each
    aggregation bound to a proposal's parameters, with the proposal; only those for a
    column of `role` (`ROLES`) if given.

    >>> [(a.name, p.name) for a, p in proposed("measure")]  # doctest: +NORMALIZE_WHITESPACE
    [('sum', None), ('mean', None), ('min', None), ('max', None), ('std', None),
     ('approx_percentile', 'p50'), ('approx_percentile', 'p90')]
    """
    if role is not None and role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    return [
        (agg.bind(proposal.params), proposal)
        for agg in AGGREGATIONS.values()
        for proposal in agg.proposals
        if role is None or role in proposal.roles
    ]


def featuretools_twin(primitive: str) -> Aggregation | None:
    """Our aggregation computing what featuretools' aggregation `primitive` computes
    (`Aggregation.featuretools`); None if none does.

    >>> featuretools_twin("num_unique").name, featuretools_twin("n_most_common")
    ('count_distinct', None)
    """
    return next((a for a in AGGREGATIONS.values() if a.featuretools == primitive), None)
