"""The shared shape of ``first`` and ``last``: the value of an extreme ``(ts, seq)``."""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from feature_service.aggregation.base import IR, Aggregation, GroupedEvents
from feature_service.aggregation.numerics import entity_edges, in_event_order, segments
from feature_service.aggregation.values import is_null, py_scalar, value_key
from feature_service.aggregation.window_events import Float, Int, WindowEvents, pick_values


class Ordered(Aggregation):
    """Value of the event with the smallest (`First`) or greatest (`Last`) ``(ts, seq)``.

    IR: ``[ts, seq, value]`` or None. `seq` should be unique within an entity; on a tie
    of ``(ts, seq)`` the value itself decides, so merge stays commutative.
    """

    output = "column"
    keeps_witnesses = True
    _sign: ClassVar[int]

    def empty(self) -> IR:
        return None

    def _wins(self, a: Sequence[Any], b: Sequence[Any]) -> bool:
        """Whether candidate `a` beats `b`."""
        ka = (a[0], a[1], value_key(a[2]))
        kb = (b[0], b[1], value_key(b[2]))
        return ka < kb if self._sign < 0 else ka > kb

    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        if is_null(value):
            return ir
        cand = [float(ts), int(seq), py_scalar(value)]
        return cand if ir is None or self._wins(cand, ir) else ir

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        """Events in strictly increasing ``(ts, seq)`` order (`numerics.in_event_order`,
        as the online path passes them): the first non-null value from the edge, no
        ties to settle; else the extreme of every candidate."""
        assert values is not None
        if in_event_order(ts, seq):
            edge = range(len(values) - 1, -1, -1) if self._sign > 0 else range(len(values))
            for i in edge:
                v = values[i]
                if v is not None and v == v:
                    return [float(ts[i]), int(seq[i]), py_scalar(v)]
            return None
        candidates = [
            (float(t_), int(s_), py_scalar(v))
            for t_, s_, v in zip(ts, seq, values, strict=True)
            if v is not None and v == v
        ]
        if not candidates:
            return None
        pick = min if self._sign < 0 else max  # the first of equal keys, as `update` keeps
        best = pick(candidates, key=itemgetter(0, 1))  # (ts, seq)
        ties = [c for c in candidates if c[0] == best[0] and c[1] == best[1]]
        if len(ties) > 1:  # one (ts, seq) twice: the value decides, as in `_wins`
            best = pick(ties, key=lambda c: value_key(c[2]))
        return list(best)

    def merge(self, a: IR, b: IR) -> IR:
        if a is None:
            return b
        if b is None:
            return a
        return b if self._wins(b, a) else a

    def finalize(self, ir: IR, t: float) -> Any:
        return None if ir is None else ir[2]

    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        if not events:
            return None
        pick = min if self._sign < 0 else max
        return pick(events, key=lambda e: (e[0], e[1]))[2]

    def witnesses(
        self, code: Int, values: npt.NDArray[Any] | None, column_kind: str | None
    ) -> npt.NDArray[np.bool_]:
        """Each entity's first (`First`) or last (`Last`) event."""
        return entity_edges(code, last=self._sign > 0)

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        assert events.values is not None
        # events are in (ts, seq) order within an entity: first is lo, last is hi - 1
        pick = lo if self._sign < 0 else hi - 1
        return pick_values(events.values, pick, hi > lo, events.kind)

    def _grouped(self, events: GroupedEvents) -> list[IR]:
        ts, seq, values, group_ids, n_groups = (
            events.ts,
            events.seq,
            events.values,
            events.group_ids,
            events.n_groups,
        )
        out: list[IR] = [None] * n_groups
        assert values is not None
        order, starts, ends, groups = segments(group_ids, seq, ts)
        if not groups:
            return out
        pick = order[starts] if self._sign < 0 else order[ends - 1]
        rows = zip(
            groups, ts[pick].tolist(), seq[pick].tolist(), values[pick].tolist(), strict=True
        )
        for g, t_, s_, v_ in rows:
            out[g] = [t_, s_, v_]
        return out
