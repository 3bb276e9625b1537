"""The shared shape of ``decayed_sum`` and ``decayed_count``: each event weighs
``2 ** (-(t - ts) / half_life)`` at read time ``t`` (Fennel's ``ExpDecaySum``).

`over_windows` (many windows at once) gathers each window's events end to end, weighs
each by its decay to the window's newest event (the IR's ``ref``), adds each window's
weights (`numpy.add.reduceat`; a floating sum, within `rel_tol` of the fold's) and
decays that sum to ``t`` as `finalize` does: a sum that overflows at ``ref`` is null,
as the IR's None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any, ClassVar

import numpy as np

from feature_service.aggregation.base import IR, PRESENT, Aggregation, Parameter
from feature_service.aggregation.numerics import finite, fsum_or_none
from feature_service.aggregation.values import is_null, numbers_in, to_float
from feature_service.aggregation.window_events import (
    Float,
    Int,
    WindowEvents,
    gathered_chunks,
)


class Decayed(Aggregation):
    """Sum of each event's weight (`_weight` of its value) decayed by its age at ``t``.

    IR: ``[ref, s]``: ``s`` is the sum decayed to time ``ref``, the newest event's
    (None, None: no events); a merge decays the older sum to the newer ``ref``, and
    `finalize` decays ``s`` from ``ref`` to ``t``. Factors are at most 1 (events are
    never after ``ref``), so nothing overflows that the plain sum would not. A
    floating sum: equal across orders to `rel_tol`.
    """

    rel_tol = 1e-9
    parameters: ClassVar[Mapping[str, Parameter]] = {
        "half_life": Parameter("duration", 1, 3650 * 86400, example="1d")
    }

    _counted: ClassVar[bool] = False
    """Each event weighs 1 (a count), not its value."""

    def _weight(self, value: Any) -> float:
        """An event's weight: 1, or its value as a float."""
        return 1.0 if self._counted else to_float(value)

    def _decay(self, seconds: float) -> float:
        return math.pow(2.0, -seconds / self.param("half_life"))

    def empty(self) -> IR:
        return [None, 0.0]

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        return self.merge(ir, [float(ts), self._weight(value)])

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        """`update` in one loop: an event newer than the sum so far decays it forward
        with `merge`'s arithmetic, inline; an older or tied one (or an overflowed sum)
        goes through `merge` itself: `update`'s IR, bit for bit, in any order of events."""
        half_life = self.param("half_life")
        counted = self._counted
        ref: float | None = None
        s: float | None = 0.0
        given = repeat(PRESENT, len(ts)) if values is None else values
        for t_, v in zip(ts, given, strict=True):
            if v is None or v != v:
                continue
            t = float(t_)
            w = 1.0 if counted else v if type(v) is float else to_float(v)  # `_weight`
            if ref is not None and s is not None and t > ref:
                s = s * math.pow(2.0, -(t - ref) / half_life) + w
                s = s if math.isfinite(s) else None  # as `finite`
                ref = t
            else:
                ref, s = self.merge([ref, s], [t, w])
        return [ref, s]

    def merge(self, a: IR, b: IR) -> IR:
        if a[0] is None:
            return list(b)
        if b[0] is None:
            return list(a)
        if (b[0], b[1] is None, b[1] or 0.0) < (a[0], a[1] is None, a[1] or 0.0):
            a, b = b, a  # canonical order: merge is exactly commutative
        if a[1] is None or b[1] is None:
            return [b[0], None]
        return [b[0], finite(a[1] * self._decay(b[0] - a[0]) + b[1])]

    def finalize(self, ir: IR, t: float) -> Any:
        ref, s = ir
        if ref is None:
            return self.empty_result()
        return None if s is None else finite(s * self._decay(t - ref))

    def empty_result(self) -> Any:
        return None

    def _weights(self, events: WindowEvents) -> Float | None:
        """Each event's weight (`_weight` of its value) as an array; None: all 1."""
        return None if self._counted else events.floats()

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        empty = self.empty_result()
        out = np.full(lo.size, np.nan if empty is None else float(empty))
        weights = self._weights(events)
        half_life = float(self.param("half_life"))
        for g in gathered_chunks(lo, hi):
            idx, starts, counts = g.idx, g.starts, g.counts
            ts = events.ts[idx]
            ref = ts[starts + counts - 1]  # the newest event of each window: the IR's ref
            with np.errstate(all="ignore"):  # overflow: inf/NaN, made null below
                decay = np.exp2(-(np.repeat(ref, counts) - ts) / half_life)
                s = np.add.reduceat(decay if weights is None else weights[idx] * decay, starts)
                value = s * np.exp2(-(t[g.rows][g.nonempty] - ref) / half_life)
            out[g.rows][g.nonempty] = np.where(np.isfinite(s) & np.isfinite(value), value, np.nan)
        return out

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        if not events:
            return self.empty_result()
        return fsum_or_none([self._weight(v) * self._decay(t - ts) for ts, _, v in events])

    def magnitude(self, values: Sequence[Any]) -> float:
        return max((abs(float(v)) for v in numbers_in(values)), default=1.0) * max(1, len(values))
