"""The shared shape of ``min`` and ``max``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_service.aggregation.base import IR, Aggregation, GroupedEvents
from feature_service.aggregation.numerics import segments
from feature_service.aggregation.values import as_float_array, is_null, numbers, to_float
from feature_service.aggregation.window_events import Float, Int, WindowEvents


class Extreme(Aggregation):
    """The smallest (`Min`) or largest (`Max`) non-null value. IR: float or None."""

    numeric_only = True
    keeps_witnesses = True
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
        xs = [x + 0.0 for x in numbers(values)]
        return type(self)._pick(xs) if xs else None

    def merge(self, a: IR, b: IR) -> IR:
        if a is None:
            return b
        if b is None:
            return a
        return type(self)._pick(a, b)

    def finalize(self, ir: IR, t: float) -> Any:
        return None if ir is None else float(ir)

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        if not events:
            return None
        return float(type(self)._pick(v for _, _, v in events)) + 0.0  # -0.0 is 0.0, as update

    def witnesses(
        self, code: Int, values: npt.NDArray[Any] | None, column_kind: str | None
    ) -> npt.NDArray[np.bool_]:
        """The event of each entity's extreme value (the first of equal ones)."""
        assert values is not None
        x = as_float_array(values)
        order = np.lexsort((x if type(self)._pick is min else -x, code))
        first = np.ones(order.size, dtype=np.bool_)
        first[1:] = code[order][1:] != code[order][:-1]
        out = np.zeros(code.size, dtype=np.bool_)
        out[order[first]] = True
        return out

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

    def _grouped(self, events: GroupedEvents) -> list[IR]:
        values, group_ids, n_groups = events.values, events.group_ids, events.n_groups
        out: list[IR] = [None] * n_groups
        assert values is not None
        order, starts, _, groups = segments(group_ids)
        if groups:
            best = type(self)._reduce.reduceat(values[order], starts) + 0.0
            for g, v in zip(groups, best.tolist(), strict=True):
                out[g] = v
        return out
