"""The aggregation algebra: one small class per statistic over a JSON-able state.

Each aggregation (the YAML names of DESIGN.md) is an `Aggregator` with Chronon's
prepare/update/merge/finalize shape, in the spirit of river's ``river/stats``:

- ``empty()`` is the intermediate representation (IR) of no events;
- ``update(ir, ts, seq, value)`` folds in one event (a null value, None or NaN, is
  ignored, so callers pass `PRESENT` for aggregations without a column);
- ``merge(a, b)`` combines the IRs of two disjoint sets of events; it is commutative
  (bit for bit) and associative (exactly for every aggregation except the floating point
  sums, which agree to rounding), so tiles can be merged in any order;
- ``finalize(ir, t)`` is the feature value at query time `t` (None for an empty window,
  except 0 for ``count`` and ``count_distinct``);
- ``grouped(ts, seq, values, group_ids)`` computes the IRs of many groups of events in
  one numpy pass; it equals folding ``update`` over each group's events.

IRs are plain JSON data (ints, floats, strings, None and lists of them) so they can be
stored in Redis and survive ``json.loads(json.dumps(ir))``; functions here accept
tuples or lists alike and never mutate an IR they are given.

Numerics: ``sum`` keeps a Neumaier compensation term; ``mean``/``var``/``std`` keep
``(n, mean, M2)`` updated with Welford's recurrence and merged with Chan et al.'s
parallel formula, and ``grouped`` uses the corrected two-pass algorithm per group.

Overflow: a sum, mean or ``M2`` that leaves the float64 range (two amounts of 1.7e308)
has no JSON form (JSON has no infinity), so it is stored as ``None`` in its IR slot and
means "overflowed": it stays ``None`` through later updates and merges (of that tile or
window), and `finalize` gives ``None``, which lookups report as ``NULL_VALUE`` and
training sets as a missing value (`offline.historical` applies the same rule). A mean
only overflows if its running difference does: the mean of 1.7e308 and 1.7e308 is
1.7e308.

>>> AGGREGATORS["sum"].fold([1.0, 2.0], [0, 1], [1.7e308, 1.7e308])
[2, None, 0.0]
>>> AGGREGATORS["sum"].finalize([2, None, 0.0], 2.0) is None
True

>>> sorted(AGGREGATORS)  # doctest: +NORMALIZE_WHITESPACE
['count', 'count_distinct', 'first', 'last', 'max', 'mean', 'min', 'std', 'sum',
 'time_since_last', 'var']
>>> agg = AGGREGATORS["mean"]
>>> left = agg.fold([1.0, 2.0], [0, 1], [10.0, 20.0])
>>> right = agg.fold([3.0], [2], [60.0])
>>> agg.finalize(agg.merge(left, right), 3.0)
30.0
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from operator import itemgetter
from typing import Any, ClassVar, Final, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_service.aggregation.values import (
    as_float_array,
    is_null,
    non_null_mask,
    safe_means,
    to_float,
)
from feature_service.aggregation.window_events import (
    Float,
    Int,
    WindowEvents,
    chunks,
    gather,
    pick_values,
)

IR: TypeAlias = Any
"""An intermediate representation: JSON-able data, specific to each aggregator."""

PRESENT: Final[int] = 1
"""The value to pass for an aggregation without a column (every event counts)."""

_EXACT_INT: Final[int] = 2**53

__all__ = [
    "AGGREGATORS",
    "IR",
    "PRESENT",
    "Aggregator",
    "Count",
    "CountDistinct",
    "First",
    "Last",
    "Max",
    "Mean",
    "Min",
    "Std",
    "Sum",
    "TimeSinceLast",
    "Var",
    "as_float_array",
    "is_null",
    "non_null_mask",
    "safe_means",
]


# --------------------------------------------------------------------------- helpers


def _finite(x: float) -> float | None:
    """`x`, or None (overflowed) when it is infinite or NaN: what an IR slot may hold."""
    return x if math.isfinite(x) else None


def _fsum(values: list[float]) -> float | None:
    """`math.fsum`, None where it overflows (fsum raises on an intermediate overflow)."""
    try:
        return _finite(math.fsum(values))
    except OverflowError:
        return None


def _blend(ma: float, na: int, mb: float, nb: int) -> float:
    """The mean of two finite means weighted by their counts, without overflowing."""
    n = na + nb
    mean = ma + (mb - ma) * (nb / n)
    return mean if math.isfinite(mean) else ma * (na / n) + mb * (nb / n)


def _welford(m: float, n: int, x: float) -> float:
    """The mean after `x` joins `n - 1` values of mean `m`, without overflowing."""
    mean = m + (x - m) / n
    return mean if math.isfinite(mean) else m * ((n - 1) / n) + x / n


def _order(ir: IR) -> tuple[Any, ...]:
    """`ir` as a sort key (None, overflowed, sorts last): merge is exactly commutative."""
    return tuple(math.inf if v is None else v for v in ir)


def _py(value: Any) -> Any:
    """A numpy scalar as the Python scalar JSON understands."""
    return value.item() if isinstance(value, np.generic) else value


def _numbers(values: Sequence[Any]) -> Iterator[float]:
    """The non-null values as floats (`to_float`: TypeError for text), in order."""
    return (v if type(v) is float else to_float(v) for v in values if v is not None and v == v)


def _value_key(value: Any) -> tuple[int, Any]:
    """Total order over the scalars an IR may hold (numbers before strings)."""
    if isinstance(value, str):
        return (1, value)
    if isinstance(value, bool | int | float):
        return (0, value)
    return (2, repr(value))


def _segments(
    group_ids: npt.NDArray[np.int64], *keys: npt.NDArray[Any]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp], list[int]]:
    """Sort events by group (then by `keys`, least significant first).

    Returns ``(order, starts, ends, groups)``: ``order[starts[i]:ends[i]]`` are the events
    of group ``groups[i]``, in key order.
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


# --------------------------------------------------------------------------- base


class Aggregator(ABC):
    """One aggregation: a monoid over JSON-able IRs plus a finalizer.

    Subclasses set `name`, `needs_column` and `numeric_only` and implement `empty`,
    `update`, `merge`, `finalize`, and `_grouped` (the vectorised fold over events that
    are already known to be non-null).

    >>> agg = AGGREGATORS["max"]
    >>> agg.name, agg.needs_column, agg.numeric_only
    ('max', True, True)
    >>> agg.grouped([1.0, 2.0, 3.0], [0, 1, 2], np.array([5.0, np.nan, 7.0]), [0, 0, 2])
    [5.0, None, 7.0]
    """

    name: ClassVar[str]
    needs_column: ClassVar[bool] = True
    numeric_only: ClassVar[bool] = False
    rounded: ClassVar[bool] = False
    """Its value is a floating point sum, equal across evaluation orders only to rounding
    (DESIGN.md: compared with a relative tolerance of 1e-9)."""

    @abstractmethod
    def empty(self) -> IR:
        """The IR of no events."""

    @abstractmethod
    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        """`ir` with one more event; a null `value` leaves it unchanged."""

    @abstractmethod
    def merge(self, a: IR, b: IR) -> IR:
        """The IR of the union of the (disjoint) events of `a` and `b`."""

    @abstractmethod
    def finalize(self, ir: IR, t: float) -> Any:
        """The feature value of `ir` evaluated at time `t`."""

    def empty_value(self, t: float) -> Any:
        """The feature value of no events at `t`: an empty window's, an entity never seen's
        (online `NOT_FOUND` serves it, as training sets give it): 0 for `count` and
        `count_distinct`, None for the rest.

        >>> AGGREGATORS["count"].empty_value(5.0), AGGREGATORS["sum"].empty_value(5.0)
        (0, None)
        """
        return self.finalize(self.empty(), t)

    @abstractmethod
    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        """The feature value of each window ``events[lo[i]:hi[i]]`` (positions in the
        sorted events), evaluated at ``t[i]``, for many windows at once: what `finalize`
        of the window's folded IR gives, as an array (training sets; see
        `aggregation.window_events`). `lifetime`: every window starts at its entity's
        first event."""

    @abstractmethod
    def _grouped(
        self,
        ts: npt.NDArray[np.float64],
        seq: npt.NDArray[np.int64],
        values: npt.NDArray[Any] | None,
        group_ids: npt.NDArray[np.int64],
        n_groups: int,
    ) -> list[IR]:
        """`grouped` over non-null events (numeric aggregators get float64 values)."""

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        """Fold `update` over events given as parallel sequences (None: no column).

        Subclasses compute the same IR, bit for bit, in one tight loop (a lookup of one
        entity folds its windows' events with it; tests hold the two equal)."""
        ir = self.empty()
        if values is None:
            for t_, s_ in zip(ts, seq, strict=True):
                ir = self.update(ir, t_, s_, PRESENT)
        else:
            for t_, s_, v_ in zip(ts, seq, values, strict=True):
                ir = self.update(ir, t_, s_, v_)
        return ir

    def merge_all(self, irs: Iterable[IR]) -> IR:
        """Merge many IRs at once (equal to folding `merge`; subclasses do it faster)."""
        out = self.empty()
        for ir in irs:
            out = self.merge(out, ir)
        return out

    def grouped(
        self,
        ts: npt.ArrayLike,
        seq: npt.ArrayLike,
        values: npt.ArrayLike | None,
        group_ids: npt.ArrayLike,
        n_groups: int | None = None,
    ) -> list[IR]:
        """The IR of each group of events, in one vectorised pass.

        `group_ids` are ints in ``[0, n_groups)`` (default: ``max + 1``); the result has
        one IR per group (`empty()` for groups without non-null events) and equals
        folding `update` over each group's events. `values` None means no column.
        """
        ts_a = np.asarray(ts, dtype=np.float64)
        seq_a = np.asarray(seq, dtype=np.int64)
        gid = np.asarray(group_ids, dtype=np.int64)
        if not ts_a.shape == seq_a.shape == gid.shape or ts_a.ndim != 1:
            raise ValueError("ts, seq and group_ids must be 1-d arrays of one length")
        n = int(gid.max()) + 1 if n_groups is None and gid.size else (n_groups or 0)
        if gid.size and (gid.min() < 0 or gid.max() >= n):
            raise ValueError(f"group ids must lie in [0, {n})")
        vals: npt.NDArray[Any] | None = None
        if values is not None:
            raw = np.asarray(values)
            if raw.shape != ts_a.shape:
                raise ValueError("values must have the length of ts")
            if self.numeric_only:
                vals = as_float_array(raw)
                keep = ~np.isnan(vals)
            else:
                vals = raw
                keep = non_null_mask(raw)
            if not keep.all():
                ts_a, seq_a, gid, vals = ts_a[keep], seq_a[keep], gid[keep], vals[keep]
        return self._grouped(ts_a, seq_a, vals, gid, n)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# --------------------------------------------------------------------------- counts


class Count(Aggregator):
    """Number of events (no column) or of non-null values (with a column). IR: int.

    >>> agg = Count()
    >>> ir = agg.fold([1.0, 2.0, 3.0], [0, 1, 2], [5.0, None, 7.0])
    >>> ir, agg.finalize(ir, 3.0), agg.finalize(agg.empty(), 3.0)
    (2, 2, 0)
    """

    name = "count"
    needs_column = False

    def empty(self) -> IR:
        return 0

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        return ir if is_null(value) else ir + 1

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        if values is None:
            return len(ts)
        return sum(1 for v in values if v is not None and v == v)

    def merge(self, a: IR, b: IR) -> IR:
        return a + b

    def merge_all(self, irs: Iterable[IR]) -> IR:
        return sum(irs)

    def finalize(self, ir: IR, t: float) -> Any:
        return int(ir)

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        return hi - lo

    def _grouped(
        self,
        ts: npt.NDArray[np.float64],
        seq: npt.NDArray[np.int64],
        values: npt.NDArray[Any] | None,
        group_ids: npt.NDArray[np.int64],
        n_groups: int,
    ) -> list[IR]:
        counts: list[int] = np.bincount(group_ids, minlength=n_groups).tolist()
        return counts


def _canonical(value: Any) -> Any:
    """The representative of `value` in a distinct set: numbers as floats, strings as is.

    Numbers that compare equal (1, 1.0, True) are one distinct value, as in a Python set.
    """
    value = _py(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int):
        return float(value) if -_EXACT_INT <= value <= _EXACT_INT else value
    if isinstance(value, float):
        return value + 0.0  # -0.0 -> 0.0
    raise TypeError(f"count_distinct takes numbers or strings, not {value!r}")


def _all_strings(values: npt.NDArray[Any]) -> bool:
    kept = values[non_null_mask(values)]
    return bool(pd.api.types.infer_dtype(kept, skipna=False) in ("string", "empty"))


class CountDistinct(Aggregator):
    """Exact number of distinct non-null values. IR: sorted list of distinct values.

    Numbers are kept as floats (so 1 and 1.0 are one value) and sort before strings.

    >>> agg = CountDistinct()
    >>> ir = agg.fold([1.0, 2.0, 3.0, 4.0], [0, 1, 2, 3], ["b", "a", "b", None])
    >>> ir, agg.finalize(ir, 4.0)
    (['a', 'b'], 2)
    """

    name = "count_distinct"

    def empty(self) -> IR:
        return []

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        c = _canonical(value)
        key = _value_key(c)
        i = bisect_left(ir, key, key=_value_key)
        if i < len(ir) and _value_key(ir[i]) == key:
            return ir
        return [*ir[:i], c, *ir[i:]]

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        assert values is not None
        seen: dict[Any, None] = {}  # insertion order: the first of equal values is kept
        for v in values:
            if v is not None and v == v:
                seen.setdefault(_canonical(v))
        return sorted(seen, key=_value_key)

    def merge(self, a: IR, b: IR) -> IR:
        if not a:
            return list(b)
        if not b:
            return list(a)
        union = set(a)
        union.update(b)
        return sorted(union, key=_value_key)

    def merge_all(self, irs: Iterable[IR]) -> IR:
        union: set[Any] = set()
        for ir in irs:
            union.update(ir)
        return sorted(union, key=_value_key)

    def finalize(self, ir: IR, t: float) -> Any:
        return len(ir)

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        prev = events.previous_same()  # distinct in [lo, hi): the i there with prev < lo
        if lifetime:  # window = entity start..hi: first occurrences
            firsts = np.zeros(prev.size + 1, dtype=np.int64)
            np.cumsum(prev < 0, out=firsts[1:])
            return firsts[hi] - firsts[lo]
        out = np.zeros(lo.size, dtype=np.int64)
        for a, b in chunks(lo, hi):
            idx, starts, nonempty = gather(lo[a:b], hi[a:b])
            if idx.size == 0:
                continue
            fresh = prev[idx] < np.repeat(lo[a:b][nonempty], (hi - lo)[a:b][nonempty])
            out[a:b][nonempty] = np.add.reduceat(fresh.astype(np.int64), starts)
        return out

    def _grouped(
        self,
        ts: npt.NDArray[np.float64],
        seq: npt.NDArray[np.int64],
        values: npt.NDArray[Any] | None,
        group_ids: npt.NDArray[np.int64],
        n_groups: int,
    ) -> list[IR]:
        out: list[IR] = [[] for _ in range(n_groups)]
        if values is None:
            raise ValueError("count_distinct needs a column")
        kind = values.dtype.kind
        vals: npt.NDArray[Any]
        if kind == "f" or (kind in "iub" and _fits_float(values)):
            vals = values.astype(np.float64) + 0.0
        elif kind == "U":
            vals = values
        elif kind == "O" and _all_strings(values):
            return self._grouped_strings(values, group_ids, n_groups)
        else:  # mixed objects, huge ints: canonicalise one by one
            for g, v in zip(group_ids.tolist(), values.tolist(), strict=True):
                out[g] = self.update(out[g], 0.0, 0, v)
            return out
        order = np.lexsort((vals, group_ids))
        g_sorted, v_sorted = group_ids[order], vals[order]
        if g_sorted.size == 0:
            return out
        new = np.empty(g_sorted.size, dtype=np.bool_)
        new[0] = True
        new[1:] = (g_sorted[1:] != g_sorted[:-1]) | (v_sorted[1:] != v_sorted[:-1])
        g_kept = g_sorted[new]
        v_kept: list[Any] = v_sorted[new].tolist()
        _, starts, ends, groups = _segments(g_kept)
        for g, a, b in zip(groups, starts.tolist(), ends.tolist(), strict=True):
            out[g] = v_kept[a:b]
        return out

    def _grouped_strings(
        self, values: npt.NDArray[Any], group_ids: npt.NDArray[np.int64], n_groups: int
    ) -> list[IR]:
        """Strings only: hash them to codes in C, dedupe (group, code) with numpy."""
        out: list[IR] = [[] for _ in range(n_groups)]
        keep = non_null_mask(values)
        codes, uniques = pd.factorize(values[keep])
        if codes.size == 0:
            return out
        order_of = np.argsort(np.asarray(uniques, dtype=object))  # str order = IR order
        rank = np.empty(order_of.size, dtype=np.int64)
        rank[order_of] = np.arange(order_of.size)
        ranks = rank[codes]
        groups_kept = group_ids[keep]
        order = np.lexsort((ranks, groups_kept))
        g_sorted, r_sorted = groups_kept[order], ranks[order]
        new = np.empty(g_sorted.size, dtype=np.bool_)
        new[0] = True
        new[1:] = (g_sorted[1:] != g_sorted[:-1]) | (r_sorted[1:] != r_sorted[:-1])
        sorted_values: list[Any] = np.asarray(uniques, dtype=object)[order_of].tolist()
        v_kept = [sorted_values[r] for r in r_sorted[new].tolist()]
        _, starts, ends, groups = _segments(g_sorted[new])
        for g, a, b in zip(groups, starts.tolist(), ends.tolist(), strict=True):
            out[g] = v_kept[a:b]
        return out


def _fits_float(values: npt.NDArray[Any]) -> bool:
    if values.size == 0 or values.dtype.kind == "b":
        return True
    return bool(values.min() >= -_EXACT_INT and values.max() <= _EXACT_INT)


# --------------------------------------------------------------------------- sums, moments


class Sum(Aggregator):
    """Sum of non-null values, compensated (Neumaier). IR: ``[n, sum, compensation]``,
    ``sum`` None once it overflowed (module docstring).

    >>> agg = Sum()
    >>> ir = agg.fold([1.0, 2.0, 3.0], [0, 1, 2], [1e16, 1.0, -1e16])
    >>> agg.finalize(ir, 3.0), agg.finalize(agg.empty(), 3.0)
    (1.0, None)
    """

    name = "sum"
    numeric_only = True
    rounded = True

    def empty(self) -> IR:
        return [0, 0.0, 0.0]

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        n, s, c = ir
        x = to_float(value)
        if s is None or not math.isfinite(total := s + x):
            return [n + 1, None, 0.0]
        c += (s - total) + x if abs(s) >= abs(x) else (x - total) + s
        return [n + 1, total, c]

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        assert values is not None
        n, c = 0, 0.0
        s: float | None = 0.0
        for x in _numbers(values):
            n += 1
            if s is None:
                continue
            total = s + x
            if not math.isfinite(total):
                s, c = None, 0.0
                continue
            c += (s - total) + x if abs(s) >= abs(x) else (x - total) + s
            s = total
        return [n, s, c]

    def merge(self, a: IR, b: IR) -> IR:
        if not a[0]:
            return list(b)
        if not b[0]:
            return list(a)
        sa, sb = a[1], b[1]
        if sa is None or sb is None or not math.isfinite(total := sa + sb):
            return [a[0] + b[0], None, 0.0]
        err = (sa - total) + sb if abs(sa) >= abs(sb) else (sb - total) + sa
        return [a[0] + b[0], total, (a[2] + b[2]) + err]

    def merge_all(self, irs: Iterable[IR]) -> IR:
        irs = [ir for ir in irs if ir[0]]
        if len(irs) < 2:
            return list(irs[0]) if irs else self.empty()
        n = sum(ir[0] for ir in irs)
        if any(ir[1] is None for ir in irs):
            return [n, None, 0.0]
        # correctly rounded; None where the partial sums overflow
        return [n, _fsum([ir[1] for ir in irs] + [ir[2] for ir in irs]), 0.0]

    def finalize(self, ir: IR, t: float) -> Any:
        n, s, c = ir
        if not n or s is None:
            return None
        return _finite(s + c)

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        small = events.gathered(lo, hi)
        if small is not None:
            x, starts, nonempty = small
            value = np.full(lo.size, np.nan)
            if x.size:
                with np.errstate(over="ignore", invalid="ignore"):
                    value[nonempty] = np.add.reduceat(x, starts)
        else:
            total, scale = events.window_sums(lo, hi)
            with np.errstate(over="ignore"):  # a window sum beyond float64 is null
                value = np.ldexp(total, scale)
        return np.where((hi > lo) & np.isfinite(value), value, np.nan)

    def _grouped(
        self,
        ts: npt.NDArray[np.float64],
        seq: npt.NDArray[np.int64],
        values: npt.NDArray[Any] | None,
        group_ids: npt.NDArray[np.int64],
        n_groups: int,
    ) -> list[IR]:
        out: list[IR] = [[0, 0.0, 0.0]] * n_groups
        assert values is not None
        order, starts, ends, groups = _segments(group_ids)
        if not groups:
            return out
        x = values[order]
        with np.errstate(over="ignore", invalid="ignore"):  # overflow: None, below
            sums: list[float] = np.add.reduceat(x, starts).tolist()
        counts: list[int] = (ends - starts).tolist()
        xs: list[float] | None = None
        for g, a, k, s in zip(groups, starts.tolist(), counts, sums, strict=True):
            total: float | None = _finite(s)
            if k > 2:  # one or two values: the float sum is already correctly rounded
                if xs is None:
                    xs = x.tolist()
                total = _fsum(xs[a : a + k])
            out[g] = [k, total, 0.0]
        return out


def _moments(
    values: npt.NDArray[np.float64], group_ids: npt.NDArray[np.int64]
) -> tuple[list[int], npt.NDArray[np.intp], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per-group ``(groups, counts, mean, M2)`` by the corrected two-pass algorithm."""
    order, starts, ends, groups = _segments(group_ids)
    x = values[order]
    if not groups:
        empty = np.zeros(0)
        return groups, np.zeros(0, dtype=np.intp), empty, empty
    counts = ends - starts
    mean, m2 = run_moments(x, starts, counts)
    return groups, counts, mean, m2


def run_moments(
    x: npt.NDArray[np.float64], starts: npt.NDArray[np.intp], counts: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(mean, M2)`` of each run ``x[starts[i]:starts[i] + counts[i]]`` (runs end to
    end, none empty) by the corrected two-pass algorithm; an overflow gives inf/NaN.
    The tiles' per-group moments and the training sets' windows both take it."""
    with np.errstate(over="ignore", invalid="ignore"):  # overflow: inf/NaN, made None later
        mean0 = safe_means(x, starts, counts)
        dev = x - np.repeat(mean0, counts)
        sdev = np.add.reduceat(dev, starts)
        m2 = np.add.reduceat(dev * dev, starts) - sdev * sdev / counts
    return mean0 + sdev / counts, np.maximum(m2, 0.0)


class Mean(Aggregator):
    """Mean of non-null values, Welford update and Chan merge. IR: ``[n, mean]``
    (``mean`` None once it overflowed, which finite values rarely make it do).

    >>> agg = Mean()
    >>> agg.finalize(agg.fold([1.0, 2.0, 3.0], [0, 1, 2], [1.0, 2.0, float("nan")]), 3.0)
    1.5
    """

    name = "mean"
    numeric_only = True
    rounded = True

    def empty(self) -> IR:
        return [0, 0.0]

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        n, m = ir
        x = to_float(value)
        if m is None:
            return [n + 1, None]
        return [n + 1, _finite(_welford(m, n + 1, x))]

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        assert values is not None
        n = 0
        m: float | None = 0.0
        for x in _numbers(values):
            n += 1
            if m is not None:
                m = _finite(_welford(m, n, x))
        return [n, m]

    def merge(self, a: IR, b: IR) -> IR:
        if _order(b) < _order(a):  # canonical order: merge is exactly commutative
            a, b = b, a
        na, ma = a[0], a[1]
        nb, mb = b[0], b[1]
        if not na:
            return list(b)
        if ma is None or mb is None:
            return [na + nb, None]
        return [na + nb, _finite(_blend(ma, na, mb, nb))]

    def merge_all(self, irs: Iterable[IR]) -> IR:
        irs = [ir for ir in irs if ir[0]]
        if len(irs) < 2:
            return list(irs[0]) if irs else self.empty()
        n = sum(ir[0] for ir in irs)
        if any(ir[1] is None for ir in irs):
            return [n, None]
        weighted = _fsum([ir[0] * ir[1] for ir in irs])
        mean = None if weighted is None else weighted / n
        return [n, mean] if mean is not None else super().merge_all(irs)

    def finalize(self, ir: IR, t: float) -> Any:
        return float(ir[1]) if ir[0] and ir[1] is not None else None

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        small = events.gathered(lo, hi)
        if small is not None:
            x, starts, nonempty = small
            value = np.full(lo.size, np.nan)
            if x.size:
                value[nonempty] = safe_means(x, starts, (hi - lo)[nonempty])
        else:
            total, scale = events.window_sums(lo, hi)
            with np.errstate(over="ignore"):
                value = np.ldexp(total / np.maximum(hi - lo, 1), scale)
        return np.where((hi > lo) & np.isfinite(value), value, np.nan)

    def _grouped(
        self,
        ts: npt.NDArray[np.float64],
        seq: npt.NDArray[np.int64],
        values: npt.NDArray[Any] | None,
        group_ids: npt.NDArray[np.int64],
        n_groups: int,
    ) -> list[IR]:
        out: list[IR] = [[0, 0.0]] * n_groups
        assert values is not None
        groups, counts, mean, _ = _moments(values, group_ids)
        for g, n, m in zip(groups, counts.tolist(), mean.tolist(), strict=True):
            out[g] = [n, _finite(m)]
        return out


class _Moments(Aggregator):
    """Count, mean and sum of squared deviations. IR: ``[n, mean, M2]``; ``M2`` (or
    ``mean`` and ``M2``) None once it overflowed."""

    numeric_only = True
    rounded = True

    def empty(self) -> IR:
        return [0, 0.0, 0.0]

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        n, m, m2 = ir
        x = to_float(value)
        if m is None:
            return [n + 1, None, None]
        d = x - m
        m_new = _welford(m, n + 1, x)
        m2_new = None if m2 is None else _finite(m2 + d * (x - m_new))
        return [n + 1, _finite(m_new), m2_new]

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        assert values is not None
        n = 0
        m: float | None = 0.0
        m2: float | None = 0.0
        for x in _numbers(values):
            n += 1
            if m is None:
                m2 = None
                continue
            d = x - m
            m_new = _welford(m, n, x)
            if m2 is not None:
                m2 = _finite(m2 + d * (x - m_new))
            m = _finite(m_new)
        return [n, m, m2]

    def merge(self, a: IR, b: IR) -> IR:
        if _order(b) < _order(a):  # canonical order: merge is exactly commutative
            a, b = b, a
        na, ma, m2a = a
        nb, mb, m2b = b
        if not na:
            return list(b)
        n = na + nb
        if ma is None or mb is None:
            return [n, None, None]
        delta = mb - ma
        mean = _finite(_blend(ma, na, mb, nb))
        if m2a is None or m2b is None:
            return [n, mean, None]
        return [n, mean, _finite((m2a + m2b) + delta * delta * (na * nb / n))]

    def merge_all(self, irs: Iterable[IR]) -> IR:
        # n = sum n_i, mean = sum n_i m_i / n, M2 = sum M2_i + sum n_i (m_i - mean)^2
        irs = [ir for ir in irs if ir[0]]
        if len(irs) < 2:
            return list(irs[0]) if irs else self.empty()
        if any(ir[1] is None or ir[2] is None for ir in irs):
            return super().merge_all(irs)  # pairwise: keeps what did not overflow
        n = sum(ir[0] for ir in irs)
        weighted = _fsum([ir[0] * ir[1] for ir in irs])
        if weighted is None:
            return super().merge_all(irs)
        mean = weighted / n
        # d * d, not d ** 2: a float power raises OverflowError where a product gives inf
        spread = _fsum([ir[0] * ((ir[1] - mean) * (ir[1] - mean)) for ir in irs])
        m2s = _fsum([ir[2] for ir in irs])
        m2 = None if spread is None or m2s is None else _finite(m2s + spread)
        return [n, mean, m2]

    def variance(self, ir: IR) -> float | None:
        n, _, m2 = ir
        return max(m2, 0.0) / (n - 1) if n >= 2 and m2 is not None else None

    def window_variances(self, events: WindowEvents, lo: Int, hi: Int) -> Float:
        """Sample variance of each window by the corrected two-pass algorithm (as
        `grouped`); NaN for fewer than two events or an overflowed M2."""
        x = events.floats()
        out = np.full(lo.size, np.nan)
        for a, b in chunks(lo, hi):
            idx, starts, nonempty = gather(lo[a:b], hi[a:b])
            if idx.size == 0:
                continue
            counts = (hi - lo)[a:b][nonempty]
            _, m2 = run_moments(x[idx], starts, counts)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[a:b][nonempty] = np.where(
                    (counts >= 2) & np.isfinite(m2), m2 / (counts - 1), np.nan
                )
        return out

    def _grouped(
        self,
        ts: npt.NDArray[np.float64],
        seq: npt.NDArray[np.int64],
        values: npt.NDArray[Any] | None,
        group_ids: npt.NDArray[np.int64],
        n_groups: int,
    ) -> list[IR]:
        out: list[IR] = [[0, 0.0, 0.0]] * n_groups
        assert values is not None
        groups, counts, mean, m2 = _moments(values, group_ids)
        for g, n, m, s in zip(groups, counts.tolist(), mean.tolist(), m2.tolist(), strict=True):
            mean_g = _finite(m)
            out[g] = [n, mean_g, None if mean_g is None else _finite(s)]
        return out


class Var(_Moments):
    """Sample variance (ddof=1) of non-null values; None below 2 values.

    IR: ``[n, mean, M2]`` (Welford update, Chan merge).

    >>> agg = Var()
    >>> agg.finalize(agg.fold([1.0, 2.0, 3.0], [0, 1, 2], [1.0, 2.0, 3.0]), 3.0)
    1.0
    >>> agg.finalize(agg.fold([1.0], [0], [5.0]), 1.0) is None
    True
    """

    name = "var"

    def finalize(self, ir: IR, t: float) -> Any:
        return self.variance(ir)

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        return self.window_variances(events, lo, hi)


class Std(_Moments):
    """Sample standard deviation (ddof=1) of non-null values; None below 2 values.

    IR: ``[n, mean, M2]`` (Welford update, Chan merge).

    >>> agg = Std()
    >>> agg.finalize(agg.fold([1.0, 2.0, 3.0], [0, 1, 2], [2.0, 4.0, 6.0]), 3.0)
    2.0
    """

    name = "std"

    def finalize(self, ir: IR, t: float) -> Any:
        var = self.variance(ir)
        return None if var is None else math.sqrt(var)

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        return np.sqrt(self.window_variances(events, lo, hi))


# --------------------------------------------------------------------------- extremes


class _Extreme(Aggregator):
    numeric_only = True
    _pick: ClassVar[Any]
    _reduce: ClassVar[np.ufunc]
    _running: ClassVar[str]  # the pandas group-wise running extreme

    def empty(self) -> IR:
        return None

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        x = to_float(value) + 0.0
        return x if ir is None else type(self)._pick(ir, x)

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        assert values is not None
        xs = [x + 0.0 for x in _numbers(values)]
        return type(self)._pick(xs) if xs else None

    def merge(self, a: IR, b: IR) -> IR:
        if a is None:
            return b
        if b is None:
            return a
        return type(self)._pick(a, b)

    def merge_all(self, irs: Iterable[IR]) -> IR:
        return type(self)._pick((ir for ir in irs if ir is not None), default=None)

    def finalize(self, ir: IR, t: float) -> Any:
        return None if ir is None else float(ir)

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        x = events.floats()
        has = hi > lo
        out = np.full(lo.size, np.nan)
        if not has.any():
            return out
        if lifetime and int((hi - lo)[has].sum()) > x.size:
            # every window starts at its entity's first event, and the windows overlap
            # (many times per entity, training sets): a running extreme, one pass
            key = f"running_{self.name}"
            if key not in events.cache:
                grouped = pd.Series(x).groupby(events.code, sort=False)
                cumulative = getattr(grouped, type(self)._running)()  # cummin / cummax
                events.cache[key] = cumulative.to_numpy(dtype=np.float64)
            out[has] = events.cache[key][hi[has] - 1]
            return out + 0.0
        # rows are sorted by (entity, t), so lo and hi only grow: the in-between pieces
        # reduceat also computes add up to one pass over the events
        bounds = np.stack([lo[has], hi[has]], axis=1).reshape(-1)
        padded = np.append(x, 0.0)
        out[has] = type(self)._reduce.reduceat(padded, bounds)[::2]
        return out + 0.0  # -0.0 -> 0.0, as `update`

    def _grouped(
        self,
        ts: npt.NDArray[np.float64],
        seq: npt.NDArray[np.int64],
        values: npt.NDArray[Any] | None,
        group_ids: npt.NDArray[np.int64],
        n_groups: int,
    ) -> list[IR]:
        out: list[IR] = [None] * n_groups
        assert values is not None
        order, starts, _, groups = _segments(group_ids)
        if groups:
            best = type(self)._reduce.reduceat(values[order], starts) + 0.0
            for g, v in zip(groups, best.tolist(), strict=True):
                out[g] = v
        return out


class Min(_Extreme):
    """Smallest non-null value. IR: float or None.

    >>> agg = Min()
    >>> agg.finalize(agg.fold([1.0, 2.0], [0, 1], [3, -2.5]), 2.0)
    -2.5
    """

    name = "min"
    _pick = min
    _reduce = np.minimum
    _running = "cummin"


class Max(_Extreme):
    """Largest non-null value. IR: float or None.

    >>> agg = Max()
    >>> agg.finalize(agg.fold([1.0, 2.0], [0, 1], [3, None]), 2.0)
    3.0
    """

    name = "max"
    _pick = max
    _reduce = np.maximum
    _running = "cummax"


# --------------------------------------------------------------------------- first / last


class _Ordered(Aggregator):
    """Value of the event with the smallest (`First`) or greatest (`Last`) ``(ts, seq)``.

    IR: ``[ts, seq, value]`` or None. `seq` should be unique within an entity; on a tie
    of ``(ts, seq)`` the value itself decides, so merge stays commutative.
    """

    _sign: ClassVar[int]

    def empty(self) -> IR:
        return None

    def _wins(self, a: Sequence[Any], b: Sequence[Any]) -> bool:
        """Whether candidate `a` beats `b`."""
        ka = (a[0], a[1], _value_key(a[2]))
        kb = (b[0], b[1], _value_key(b[2]))
        return ka < kb if self._sign < 0 else ka > kb

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        cand = [float(ts), int(seq), _py(value)]
        return cand if ir is None or self._wins(cand, ir) else ir

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        assert values is not None
        candidates = [
            (float(t_), int(s_), _py(v))
            for t_, s_, v in zip(ts, seq, values, strict=True)
            if v is not None and v == v
        ]
        if not candidates:
            return None
        pick = min if self._sign < 0 else max  # the first of equal keys, as `update` keeps
        best = pick(candidates, key=itemgetter(0, 1))  # (ts, seq)
        ties = [c for c in candidates if c[0] == best[0] and c[1] == best[1]]
        if len(ties) > 1:  # one (ts, seq) twice: the value decides, as in `_wins`
            best = pick(ties, key=lambda c: _value_key(c[2]))
        return list(best)

    def merge(self, a: IR, b: IR) -> IR:
        if a is None:
            return b
        if b is None:
            return a
        return b if self._wins(b, a) else a

    def merge_all(self, irs: Iterable[IR]) -> IR:
        pick = min if self._sign < 0 else max
        return pick(
            (ir for ir in irs if ir is not None),
            key=lambda ir: (ir[0], ir[1], _value_key(ir[2])),
            default=None,
        )

    def finalize(self, ir: IR, t: float) -> Any:
        return None if ir is None else ir[2]

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        assert events.values is not None
        # events are in (ts, seq) order within an entity: first is lo, last is hi - 1
        pick = lo if self._sign < 0 else hi - 1
        return pick_values(events.values, pick, hi > lo, events.kind)

    def _grouped(
        self,
        ts: npt.NDArray[np.float64],
        seq: npt.NDArray[np.int64],
        values: npt.NDArray[Any] | None,
        group_ids: npt.NDArray[np.int64],
        n_groups: int,
    ) -> list[IR]:
        out: list[IR] = [None] * n_groups
        assert values is not None
        order, starts, ends, groups = _segments(group_ids, seq, ts)
        if not groups:
            return out
        pick = order[starts] if self._sign < 0 else order[ends - 1]
        rows = zip(
            groups, ts[pick].tolist(), seq[pick].tolist(), values[pick].tolist(), strict=True
        )
        for g, t_, s_, v_ in rows:
            out[g] = [t_, s_, v_]
        return out


class First(_Ordered):
    """Value of the earliest event (smallest ``(ts, seq)``) with a non-null value.

    >>> agg = First()
    >>> agg.finalize(agg.fold([5.0, 1.0, 1.0], [0, 2, 1], ["c", "b", "a"]), 5.0)
    'a'
    """

    name = "first"
    _sign = -1


class Last(_Ordered):
    """Value of the latest event (greatest ``(ts, seq)``) with a non-null value.

    >>> agg = Last()
    >>> agg.finalize(agg.fold([5.0, 5.0, 1.0], [0, 2, 1], [10, 20, 30]), 5.0)
    20
    """

    name = "last"
    _sign = 1


# --------------------------------------------------------------------------- recency


class TimeSinceLast(Aggregator):
    """``t`` minus the latest event time (of non-null values, with a column). IR: float|None.

    >>> agg = TimeSinceLast()
    >>> agg.finalize(agg.fold([10.0, 40.0], [0, 1], None), 100.0)
    60.0
    """

    name = "time_since_last"
    needs_column = False

    def empty(self) -> IR:
        return None

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        ts = float(ts)
        return ts if ir is None or ts > ir else ir

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        if values is None:
            return float(max(ts)) if len(ts) else None
        kept = [t_ for t_, v in zip(ts, values, strict=True) if v is not None and v == v]
        return float(max(kept)) if kept else None

    def merge(self, a: IR, b: IR) -> IR:
        if a is None:
            return b
        if b is None:
            return a
        return max(a, b)

    def merge_all(self, irs: Iterable[IR]) -> IR:
        return max((ir for ir in irs if ir is not None), default=None)

    def finalize(self, ir: IR, t: float) -> Any:
        return None if ir is None else t - ir

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        has = hi > lo
        out = np.full(lo.size, np.nan)
        out[has] = t[has] - events.ts[hi[has] - 1]
        return out

    def _grouped(
        self,
        ts: npt.NDArray[np.float64],
        seq: npt.NDArray[np.int64],
        values: npt.NDArray[Any] | None,
        group_ids: npt.NDArray[np.int64],
        n_groups: int,
    ) -> list[IR]:
        out: list[IR] = [None] * n_groups
        order, starts, _, groups = _segments(group_ids)
        if groups:
            latest = np.maximum.reduceat(ts[order], starts)
            for g, v in zip(groups, latest.tolist(), strict=True):
                out[g] = v
        return out


AGGREGATORS: dict[str, Aggregator] = {
    agg.name: agg
    for agg in (
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
    )
}
"""Every aggregation by its YAML name."""
