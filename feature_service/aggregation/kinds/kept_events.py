"""The shared shape of ``last_k`` and ``first_k`` (the values of the k latest or
earliest events, in event order) and of ``last_distinct_k`` (`EventList`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import islice
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt

from feature_service.aggregation.base import IR, Aggregation, Parameter
from feature_service.aggregation.numerics import in_event_order
from feature_service.aggregation.values import is_null, py_scalar, value_key
from feature_service.aggregation.window_events import Float, Int, WindowEvents

K: Final[Parameter] = Parameter("int", 1, 1000, example=3)
"""How many values a k-list keeps (1..1000)."""


def _key(event: Sequence[Any]) -> tuple[Any, ...]:
    return (event[0], event[1], value_key(event[2]))


class EventList(Aggregation):
    """An IR of whole events ``[ts, seq, value]`` that `_kept` trims to at most k:
    update, fold and merge all go through `_kept`, so any grouping gives its IR."""

    output = "list"
    parameters: ClassVar[Mapping[str, Parameter]] = {"k": K}

    def empty(self) -> IR:
        return []

    def _kept(self, events: list[Any]) -> list[Any]:
        raise NotImplementedError

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


class KeptEvents(EventList):
    """The values of the `k` events with the greatest (`LastK`) or smallest (`FirstK`)
    ``(ts, seq)``, in event order. IR: those events as ``[ts, seq, value]``, sorted by
    ``(ts, seq)`` (on a tie, by value, so merge stays exactly commutative).

    A window's value needs no more than its k edge events, so a lifetime value over
    compacted events is kept by witnesses (each entity's k edge events), and
    `over_windows` is a slice of each window's sorted events.
    """

    keeps_witnesses = True
    _latest: ClassVar[bool]

    def _kept(self, events: list[Any]) -> list[Any]:
        k: int = self.param("k")
        events.sort(key=_key)
        return events[-k:] if self._latest else events[:k]

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        """The k non-null events nearest the end (`LastK`) or the start (`FirstK`) when
        the events come in ``(ts, seq)`` order (`numerics.in_event_order`), as the online
        path passes them: `_kept`'s IR without a sort; else `EventList.fold`."""
        assert values is not None
        if not in_event_order(ts, seq):
            return super().fold(ts, seq, values)
        n = len(values)
        order = range(n - 1, -1, -1) if self._latest else range(n)
        edge = list(islice((i for i in order if not is_null(values[i])), self.param("k")))
        if self._latest:
            edge.reverse()
        return [[float(ts[i]), int(seq[i]), py_scalar(values[i])] for i in edge]

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        if not events:
            return None
        k = self.param("k")
        ordered = sorted(events, key=lambda e: (e[0], e[1]))
        return [v for _, _, v in (ordered[-k:] if self._latest else ordered[:k])]

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        assert events.values is not None
        k = self.param("k")
        values = events.values
        out = np.empty(lo.size, dtype=object)
        for i, (a, b) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True)):
            if b > a:  # events are in (ts, seq) order: the window's edge is a slice
                part = values[max(a, b - k) : b] if self._latest else values[a : min(b, a + k)]
                out[i] = [py_scalar(v) for v in part.tolist()]
        return out

    def witnesses(
        self, code: Int, values: npt.NDArray[Any] | None, column_kind: str | None
    ) -> npt.NDArray[np.bool_]:
        """Each entity's k last (`LastK`) or first (`FirstK`) events."""
        k = self.param("k")
        n = code.size
        if n == 0:
            return np.zeros(0, dtype=np.bool_)
        starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
        ends = np.r_[starts[1:], n]
        lengths = ends - starts
        position = np.arange(n) - np.repeat(starts, lengths)  # index within its entity
        if self._latest:
            return np.asarray(np.repeat(lengths, lengths) - position <= k, dtype=np.bool_)
        return np.asarray(position < k, dtype=np.bool_)
