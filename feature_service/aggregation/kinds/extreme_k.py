"""The shared shape of ``top_k`` and ``bottom_k``: the k largest or smallest values.

`over_windows` (many windows at once) sorts the gathered events by value, then stably
by window, and keeps each window's first k: equal values are one bit pattern
(``-0.0`` as ``0.0``), so the lists are the fold's, bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from heapq import merge as merge_sorted
from typing import Any, ClassVar

import numpy as np

from feature_service.aggregation.base import IR, Aggregation, Parameter
from feature_service.aggregation.values import is_null, numbers, to_float
from feature_service.aggregation.window_events import (
    Float,
    Int,
    WindowEvents,
    gathered_chunks,
)


class ExtremeK(Aggregation):
    """The `k` largest (`TopK`, largest first) or smallest (`BottomK`, smallest first)
    non-null values, repeats kept; null for none. IR: those values in that order (as
    floats, ``-0.0`` as ``0.0`` so equal values are one bit pattern): the k extremes
    of a union are among the k extremes of its parts, so the IR is bounded by k and
    merges exactly in any grouping."""

    output = "list:float"
    numeric_only = True
    parameters: ClassVar[Mapping[str, Parameter]] = {"k": Parameter("int", 1, 1000, example=3)}
    _largest: ClassVar[bool]

    def _kept(self, values: list[float]) -> list[float]:
        values.sort(reverse=self._largest)
        return values[: self.param("k")]

    def empty(self) -> IR:
        return []

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        return self._kept([*ir, to_float(value) + 0.0])

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        assert values is not None
        return self._kept([x + 0.0 for x in numbers(values)])

    def merge(self, a: IR, b: IR) -> IR:
        merged = merge_sorted(a, b, reverse=self._largest)
        return [x for _, x in zip(range(self.param("k")), merged, strict=False)]

    def finalize(self, ir: IR, t: float) -> Any:
        return list(ir) if ir else None

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        x = events.floats()
        k = self.param("k")
        out: list[Any] = [None] * lo.size
        for g in gathered_chunks(lo, hi):
            idx, starts, counts = g.idx, g.starts, g.counts
            window = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
            xs = x[idx] + 0.0
            by_value = np.argsort(-xs if self._largest else xs)  # ties: equal bits
            order = by_value[np.argsort(window[by_value], kind="stable")]
            kept = np.arange(xs.size) - starts[window] < k  # window is sorted already
            values = xs[order][kept].tolist()
            cuts = np.concatenate(([0], np.cumsum(np.minimum(counts, k)))).tolist()
            for w, row in enumerate((np.flatnonzero(g.nonempty) + g.rows.start).tolist()):
                out[row] = values[cuts[w] : cuts[w + 1]]
        return self.window_column(out, events.kind)

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        if not events:
            return None
        ranked = sorted((float(v) + 0.0 for _, _, v in events), reverse=self._largest)
        return ranked[: self.param("k")]
