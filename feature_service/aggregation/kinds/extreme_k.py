"""The shared shape of ``top_k`` and ``bottom_k``: the k largest or smallest values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from heapq import merge as merge_sorted
from typing import Any, ClassVar

from feature_service.aggregation.base import IR, Aggregation, Parameter
from feature_service.aggregation.values import is_null, numbers, to_float


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

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        if not events:
            return None
        ranked = sorted((float(v) + 0.0 for _, _, v in events), reverse=self._largest)
        return ranked[: self.param("k")]
