"""``last_distinct_k``: the k most recent distinct values, newest first (Tecton's
``last_distinct(n)``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from feature_service.aggregation.base import IR, Aggregation, Parameter
from feature_service.aggregation.values import distinct_value, is_null, py_scalar, value_key


def _newest_first(event: Sequence[Any]) -> tuple[Any, ...]:
    return (-event[0], -event[1], value_key(event[2]))


class LastDistinctK(Aggregation):
    """The `k` distinct non-null values whose latest events are the latest, newest
    first (1 and 1.0 are one value, as in ``count_distinct``; each shown as its latest
    event has it); null for none.

    IR: for each of those values its latest event ``[ts, seq, value]``, newest first. A
    value among the k newest of a union has its latest event in one part, where fewer
    than k values are newer, so it is among that part's k: the IR is bounded by k and
    merges exactly in any grouping.

    >>> agg = LastDistinctK().bind({"k": 2})
    >>> agg.finalize(agg.fold([1.0, 2.0, 3.0, 4.0], [0, 1, 2, 3], ["a", "b", "a", "c"]), 4.0)
    ['c', 'a']
    """

    name = "last_distinct_k"
    output = "list"
    parameters: ClassVar[Mapping[str, Parameter]] = {"k": Parameter("int", 1, 1000, example=3)}

    def empty(self) -> IR:
        return []

    def _kept(self, events: Sequence[Sequence[Any]]) -> list[Any]:
        latest: dict[Any, list[Any]] = {}
        for e in sorted(events, key=_newest_first):
            latest.setdefault(value_key(distinct_value(e[2])), list(e))
        return sorted(latest.values(), key=_newest_first)[: self.param("k")]

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        return self._kept([*ir, [float(ts), int(seq), py_scalar(value)]])

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        assert values is not None
        return self._kept(
            [
                [float(t_), int(s_), py_scalar(v)]
                for t_, s_, v in zip(ts, seq, values, strict=True)
                if not is_null(v)
            ]
        )

    def merge(self, a: IR, b: IR) -> IR:
        return self._kept([*a, *b])

    def finalize(self, ir: IR, t: float) -> Any:
        return [e[2] for e in ir] if ir else None

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        out: list[Any] = []
        seen: set[Any] = set()
        for _, _, v in sorted(events, key=lambda e: (e[0], e[1]), reverse=True):
            if distinct_value(v) not in seen:
                seen.add(distinct_value(v))
                out.append(v)
        return out[: self.param("k")] or None
