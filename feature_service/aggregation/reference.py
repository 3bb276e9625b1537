"""A brute-force reference: the contract of DESIGN.md written as plainly as possible.

Used by the tests (and handy for debugging) to check the tile engine: it filters the
events by the window condition with exact rational arithmetic and computes each
aggregation with numpy or the standard library. Slow on purpose; not for production.

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

import numpy as np

from feature_service.aggregation.spec import FeatureLike, FeatureSpec
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
    """The value of feature `spec` at `t` over `events`, straight from the contract."""
    chosen = selected(events, t, spec, index)
    agg = spec.aggregation
    pairs: list[tuple[Event, Any]]
    if spec.column is None:
        pairs = [(e, 1.0) for e in chosen]
    else:
        pairs = [(e, e.values.get(spec.column)) for e in chosen]
        pairs = [(e, v) for e, v in pairs if not _null(v)]
    if agg == "count":
        return len(pairs)
    if agg == "count_distinct":
        return len({v for _, v in pairs})
    if not pairs:
        return None
    xs = [v for _, v in pairs]
    if agg == "sum":
        return math.fsum(float(x) for x in xs)
    if agg == "mean":
        return float(np.mean(np.asarray(xs, dtype=np.float64)))
    if agg in ("std", "var"):
        if len(xs) < 2:
            return None
        arr = np.asarray(xs, dtype=np.float64)
        return float(np.std(arr, ddof=1) if agg == "std" else np.var(arr, ddof=1))
    if agg == "min":
        return float(min(xs))
    if agg == "max":
        return float(max(xs))
    if agg == "first":
        return min(pairs, key=lambda p: (p[0].ts, p[0].seq))[1]
    if agg == "last":
        return max(pairs, key=lambda p: (p[0].ts, p[0].seq))[1]
    if agg == "time_since_last":
        return t - max(e.ts for e, _ in pairs)
    raise ValueError(f"unknown aggregation {agg!r}")


def matches(aggregation: str, actual: Any, expected: Any, values: Sequence[Any] = ()) -> bool:
    """Whether `actual` equals the reference `expected` (floating sums to rel. 1e-9).

    `values` are the aggregated values; they set an absolute floor for results that are
    (nearly) zero by cancellation, where no relative tolerance can hold.

    >>> matches("mean", 0.1 + 0.2, 0.3), matches("count", 2, 2.0), matches("min", None, 0.0)
    (True, True, False)
    """
    if actual is None or expected is None:
        return actual is None and expected is None
    if aggregation not in ("sum", "mean", "var", "std"):
        return bool(actual == expected)
    nums = [abs(float(v)) for v in values if not _null(v)]
    big = max(nums, default=0.0)
    if aggregation == "sum":
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12 * math.fsum(nums))
    if aggregation == "mean":
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12 * big)
    if aggregation == "std":
        actual, expected = actual * actual, expected * expected
    return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12 * big * big)
