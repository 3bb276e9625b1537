"""A brute-force reference: the contract of DESIGN.md written as plainly as possible.

Used by the tests (and handy for debugging) to check the online state and the training
sets: it filters the events by the window condition with exact rational arithmetic and
gives them to each aggregation's `oracle` (numpy or the standard library, no IR). Slow
on purpose; not for production.

>>> events = [Event(10.0, 0, {"x": 1.0}), Event(70.0, 1, {"x": 3.0})]
>>> brute_force(events, 75.0, FeatureSpec("s", "sum", "x", 60, 60))
4.0
>>> brute_force(events, 135.0, FeatureSpec("s", "sum", "x", 60, 60))
3.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from feature_service.aggregation.base import PRESENT, Aggregation
from feature_service.aggregation.registry import aggregation
from feature_service.aggregation.spec import FeatureLike, FeatureSpec, aggregation_of
from feature_service.aggregation.values import plain_value
from feature_service.aggregation.windows import default_hop

__all__ = ["Event", "FeatureSpec", "brute_force", "matches", "selected"]


@dataclass(frozen=True)
class Event:
    """One event of one entity; `passes[i]` is feature i's `where` result (None: all).

    >>> Event(12.5, 3, {"amount": 9.0}, (True, False)).passes[1]
    False
    """

    ts: float
    seq: int
    values: Mapping[str, Any] = field(default_factory=dict)
    passes: Sequence[bool] | None = None


def _null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def selected(events: Iterable[Event], t: float, spec: FeatureLike, index: int = 0) -> list[Event]:
    """The events feature `spec` (number `index` of its view) aggregates at `t`."""
    out = []
    for e in events:
        if e.passes is not None and not e.passes[index]:
            continue
        if e.ts > t:
            continue
        if spec.window_s is not None:
            hop = spec.hop_s or default_hop(spec.window_s)
            start = math.floor((Fraction(t) - spec.window_s) / hop) * hop
            if Fraction(e.ts) < start:
                continue
        out.append(e)
    return out


def brute_force(events: Iterable[Event], t: float, spec: FeatureLike, index: int = 0) -> Any:
    """The value of feature `spec` at `t` over `events`, straight from the contract: the
    window's events, nulls left out, given to the aggregation's own `oracle`."""
    chosen = selected(events, t, spec, index)
    pairs: list[tuple[float, int, Any]]
    if spec.column is None:
        pairs = [(e.ts, e.seq, PRESENT) for e in chosen]
    else:
        pairs = [(e.ts, e.seq, e.values.get(spec.column)) for e in chosen]
        pairs = [(ts, seq, v) for ts, seq, v in pairs if not _null(v)]
    return aggregation_of(spec).oracle(pairs, t)


def matches(
    feature: str | FeatureLike, actual: Any, expected: Any, values: Sequence[Any] = ()
) -> bool:
    """Whether `actual` equals the reference `expected` (floating sums to rel. 1e-9, a
    sketch within its documented bound: `Aggregation.matches_exact`); `feature` is a
    feature (its aggregation bound to its parameters) or the name of an aggregation
    without parameters.

    `values` are the aggregated values; they set an absolute floor for results that are
    (nearly) zero by cancellation, where no relative tolerance can hold.

    >>> matches("mean", 0.1 + 0.2, 0.3), matches("count", 2, 2.0), matches("min", None, 0.0)
    (True, True, False)
    """
    agg: Aggregation = (
        aggregation(feature).bind({}) if isinstance(feature, str) else aggregation_of(feature)
    )
    magnitude = agg.magnitude([v for v in values if not _null(v)])
    return agg.matches_exact(plain_value(actual), plain_value(expected), magnitude)
