"""``count_distinct``: the exact number of distinct non-null values."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_service.aggregation.base import IR, Aggregation, GroupedEvents, Proposal
from feature_service.aggregation.numerics import segments
from feature_service.aggregation.values import (
    EXACT_INT,
    distinct_codes,
    distinct_value,
    is_null,
    non_null_mask,
    value_key,
)
from feature_service.aggregation.window_events import (
    Float,
    Int,
    WindowEvents,
    gathered_chunks,
)


def _all_strings(values: npt.NDArray[Any]) -> bool:
    kept = values[non_null_mask(values)]
    return bool(pd.api.types.infer_dtype(kept, skipna=False) in ("string", "empty"))


class CountDistinct(Aggregation):
    """Exact number of distinct non-null values. IR: sorted list of distinct values.

    Numbers are kept as floats (so 1 and 1.0 are one value) and sort before strings.

    >>> agg = CountDistinct()
    >>> ir = agg.fold([1.0, 2.0, 3.0, 4.0], [0, 1, 2, 3], ["b", "a", "b", None])
    >>> ir, agg.finalize(ir, 4.0)
    (['a', 'b'], 2)
    """

    name = "count_distinct"
    featuretools = "num_unique"
    proposals = (
        Proposal(
            frozenset({"category", "identifier"}),
            "breadth",
            "Different {column} values among the {entity}'s events in the last {span}.",
            tier=1,
        ),
    )
    output = "int"
    keeps_witnesses = True
    compacted = "distinct"

    def empty(self) -> IR:
        return []

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        c = distinct_value(value)
        key = value_key(c)
        i = bisect_left(ir, key, key=value_key)
        if i < len(ir) and value_key(ir[i]) == key:
            return ir
        return [*ir[:i], c, *ir[i:]]

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        assert values is not None
        seen: dict[Any, None] = {}  # insertion order: the first of equal values is kept
        for v in values:
            if v is not None and v == v:
                seen.setdefault(distinct_value(v))
        return sorted(seen, key=value_key)

    def merge(self, a: IR, b: IR) -> IR:
        if not a:
            return list(b)
        if not b:
            return list(a)
        union = set(a)
        union.update(b)
        return sorted(union, key=value_key)

    def finalize(self, ir: IR, t: float) -> Any:
        return len(ir)

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        return len({v for _, _, v in events})

    def of_distinct(self, values: Sequence[Any], t: float) -> Any:
        return len(values)

    def witnesses(
        self, code: Int, values: npt.NDArray[Any] | None, column_kind: str | None
    ) -> npt.NDArray[np.bool_]:
        """The first event of each (entity, distinct value)."""
        assert values is not None
        pairs = pd.DataFrame({"e": code, "v": distinct_codes(values, column_kind)})
        return np.asarray(~pairs.duplicated().to_numpy(), dtype=np.bool_)

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        prev = events.previous_same()  # distinct in [lo, hi): the i there with prev < lo
        if lifetime:  # window = entity start..hi: first occurrences
            firsts = np.zeros(prev.size + 1, dtype=np.int64)
            np.cumsum(prev < 0, out=firsts[1:])
            return firsts[hi] - firsts[lo]
        out = np.zeros(lo.size, dtype=np.int64)
        for g in gathered_chunks(lo, hi):
            fresh = prev[g.idx] < np.repeat(lo[g.rows][g.nonempty], g.counts)
            out[g.rows][g.nonempty] = np.add.reduceat(fresh.astype(np.int64), g.starts)
        return out

    def _grouped(self, events: GroupedEvents) -> list[IR]:
        values, group_ids, n_groups = events.values, events.group_ids, events.n_groups
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
        _, starts, ends, groups = segments(g_kept)
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
        _, starts, ends, groups = segments(g_sorted[new])
        for g, a, b in zip(groups, starts.tolist(), ends.tolist(), strict=True):
            out[g] = v_kept[a:b]
        return out


def _fits_float(values: npt.NDArray[Any]) -> bool:
    if values.size == 0 or values.dtype.kind == "b":
        return True
    return bool(values.min() >= -EXACT_INT and values.max() <= EXACT_INT)
