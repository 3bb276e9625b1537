"""The shared shape of ``decayed_sum`` and ``decayed_count``: each event weighs
``2 ** (-(t - ts) / half_life)`` at read time ``t`` (Fennel's ``ExpDecaySum``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from feature_service.aggregation.base import IR, Aggregation, Parameter
from feature_service.aggregation.numerics import finite, fsum_or_none
from feature_service.aggregation.values import is_null, numbers_in


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

    def _weight(self, value: Any) -> float:
        raise NotImplementedError

    def _decay(self, seconds: float) -> float:
        return math.pow(2.0, -seconds / self.param("half_life"))

    def empty(self) -> IR:
        return [None, 0.0]

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        return self.merge(ir, [float(ts), self._weight(value)])

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

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        if not events:
            return self.empty_result()
        return fsum_or_none([self._weight(v) * self._decay(t - ts) for ts, _, v in events])

    def magnitude(self, values: Sequence[Any]) -> float:
        return max((abs(float(v)) for v in numbers_in(values)), default=1.0) * max(1, len(values))
