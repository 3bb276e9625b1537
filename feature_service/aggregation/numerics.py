"""Floating point arithmetic the aggregation kinds share: overflow as None, compensated
and overflow-safe means, the corrected two-pass moments, grouping events by id, and
whether events are in order.

Overflow: a sum, mean or ``M2`` that leaves the float64 range (two amounts of 1.7e308)
has no JSON form (JSON has no infinity), so it is stored as ``None`` in its IR slot and
means "overflowed": it stays ``None`` through later updates and merges, and `finalize`
gives ``None``, which lookups report as ``NULL_VALUE`` and training sets as a missing
value. A mean only overflows if its running difference does: the mean of 1.7e308 and
1.7e308 is 1.7e308.

>>> finite(float("inf")) is None, fsum_or_none([1.7e308, 1.7e308]) is None
(True, True)
>>> welford(1.7e308, 2, 1.7e308)
1.7e+308
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from feature_service.aggregation.values import numbers_in, safe_means


def finite(x: float) -> float | None:
    """`x`, or None (overflowed) when it is infinite or NaN: what an IR slot may hold."""
    return x if math.isfinite(x) else None


FLAT_VARIANCE = 1e-19
"""A sample variance below this is no variation: skewness and kurtosis 0 (Apache
Commons Math's threshold, which Chronon's higher moments follow)."""


def moment_magnitude(values: Sequence[Any], power: int) -> float:
    """The scale of a sample moment of order `power` (skew 3, kurtosis 4) of `values`,
    for `Aggregation.matches`: such a moment is ill-conditioned where the values barely
    vary around a large mean, so its floor grows as ``(max |x| / spread) ** power``.

    >>> moment_magnitude([1.0, 2.0], 3), moment_magnitude([10.0, 11.0, 12.0], 3)
    (1.0, 216000.0)
    >>> moment_magnitude([1e150, 1e150, 1e150], 3)  # beyond float64: no floor holds
    inf
    """
    xs = [float(v) for v in numbers_in(values)]
    if len(xs) < power:
        return 1.0
    spread = max(max(xs) - min(xs), math.sqrt(FLAT_VARIANCE))
    big = max(abs(x) for x in xs)
    try:
        scale = (big / spread) ** power
    except OverflowError:
        scale = math.inf
    return float(max(1.0, scale) * 1e3)


def fsum_or_none(values: list[float]) -> float | None:
    """`math.fsum`, None where it overflows (fsum raises on an intermediate overflow,
    and on infinities of both signs)."""
    try:
        return finite(math.fsum(values))
    except (OverflowError, ValueError):
        return None


def blend(ma: float, na: int, mb: float, nb: int) -> float:
    """The mean of two finite means weighted by their counts, without overflowing.

    >>> blend(1.0, 1, 4.0, 2)
    3.0
    """
    n = na + nb
    mean = ma + (mb - ma) * (nb / n)
    return mean if math.isfinite(mean) else ma * (na / n) + mb * (nb / n)


def welford(m: float, n: int, x: float) -> float:
    """The mean after `x` joins `n - 1` values of mean `m`, without overflowing."""
    mean = m + (x - m) / n
    return mean if math.isfinite(mean) else m * ((n - 1) / n) + x / n


def ir_order(ir: Any) -> tuple[Any, ...]:
    """`ir` (a list of numbers) as a sort key, None (overflowed) last: merging in this
    order makes a merge exactly commutative.

    >>> ir_order([2, None, 1.0])
    (2, inf, 1.0)
    """
    return tuple(math.inf if v is None else v for v in ir)


def in_event_order(ts: Sequence[float], seq: Sequence[int]) -> bool:
    """Whether events given as parallel `ts` and `seq` are in strictly increasing
    ``(ts, seq)`` order, as the online path passes them (so a kind's `fold` may take the
    latest events from the end): one pass in C where the times are distinct.

    >>> in_event_order([1.0, 2.0, 2.0], [5, 3, 4]), in_event_order([1.0, 2.0, 2.0], [5, 4, 3])
    (True, False)
    >>> in_event_order([2.0, 1.0], [0, 1]), in_event_order([], [])
    (False, True)
    """
    times = ts if isinstance(ts, list) else list(ts)
    if sorted(times) != times:  # sorting a sorted list is one linear pass
        return False
    if len(set(times)) == len(times):
        return True
    pairs = list(zip(times, seq, strict=True))  # tied times: their seq decides
    return all(map(operator.lt, pairs, pairs[1:]))


def segments(
    group_ids: npt.NDArray[np.int64], *keys: npt.NDArray[Any]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp], list[int]]:
    """Sort events by group (then by `keys`, least significant first).

    Returns ``(order, starts, ends, groups)``: ``order[starts[i]:ends[i]]`` are the events
    of group ``groups[i]``, in key order.

    >>> order, starts, ends, groups = segments(np.array([1, 0, 1]))
    >>> order.tolist(), starts.tolist(), ends.tolist(), groups
    ([1, 0, 2], [0, 1], [1, 3], [0, 1])
    """
    order = np.lexsort((*keys, group_ids)) if keys else np.argsort(group_ids, kind="stable")
    ordered = group_ids[order]
    if ordered.size == 0:
        empty = np.zeros(0, dtype=np.intp)
        return order, empty, empty, []
    change = np.empty(ordered.size, dtype=np.bool_)
    change[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], ordered.size)
    return order, starts, ends, ordered[starts].tolist()


def run_moments(
    x: npt.NDArray[np.float64], starts: npt.NDArray[np.intp], counts: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(mean, M2)`` of each run ``x[starts[i]:starts[i] + counts[i]]`` (runs end to
    end, none empty) by the corrected two-pass algorithm; an overflow gives inf/NaN.

    >>> mean, m2 = run_moments(np.array([1.0, 3.0, 5.0]), np.array([0, 2]), np.array([2, 1]))
    >>> mean.tolist(), m2.tolist()
    ([2.0, 5.0], [2.0, 0.0])
    """
    with np.errstate(over="ignore", invalid="ignore"):  # overflow: inf/NaN, made None later
        mean0 = safe_means(x, starts, counts)
        dev = x - np.repeat(mean0, counts)
        sdev = np.add.reduceat(dev, starts)
        m2 = np.add.reduceat(dev * dev, starts) - sdev * sdev / counts
    return mean0 + sdev / counts, np.maximum(m2, 0.0)


def group_moments(
    values: npt.NDArray[np.float64], group_ids: npt.NDArray[np.int64]
) -> tuple[list[int], npt.NDArray[np.intp], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per-group ``(groups, counts, mean, M2)`` by the corrected two-pass algorithm."""
    order, starts, ends, groups = segments(group_ids)
    x = values[order]
    if not groups:
        empty = np.zeros(0)
        return groups, np.zeros(0, dtype=np.intp), empty, empty
    counts = ends - starts
    mean, m2 = run_moments(x, starts, counts)
    return groups, counts, mean, m2


def entity_edges(code: npt.NDArray[np.int64], last: bool) -> npt.NDArray[np.bool_]:
    """Of events sorted by entity `code`, each entity's first (or `last`) one.

    >>> entity_edges(np.array([0, 0, 1]), last=False).tolist()
    [True, False, True]
    >>> entity_edges(np.array([0, 0, 1]), last=True).tolist()
    [False, True, True]
    """
    edge = np.ones(code.size, dtype=np.bool_)
    if last:
        edge[:-1] = code[1:] != code[:-1]
    else:
        edge[1:] = code[1:] != code[:-1]
    return edge
