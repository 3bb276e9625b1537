"""`EntityState`: one entity's online state built event by event, for tests.

The worker and the backfill write many entities at once (`aggregation.state.write`);
tests that follow one entity add its events one by one and read it back through the
same `write`, `decode` and `evaluate`.

>>> from feature_service.aggregation.spec import FeatureSpec
>>> layout = StateLayout([FeatureSpec("n_1h", "count", window_s=3600),
...                       FeatureSpec("total", "sum", "amount")], {"amount": "float"})
>>> state = EntityState(layout)
>>> state.add(1000.5, 0, {"amount": 2.0}), state.add(1100.0, 1, {"amount": 3.0})
(True, True)
>>> state.evaluate(1100.0)
{'n_1h': 2, 'total': 5.0}
>>> EntityState.from_bytes(layout, state.to_bytes()).evaluate(1050.0)
{'n_1h': 1, 'total': 2.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from feature_service.aggregation.state import (
    Events,
    Meta,
    StateLayout,
    decode,
    empty_events,
    evaluate,
    write,
)


class EntityState:
    """The state of one entity, for tools and tests: events added one by one, then
    compacted, evaluated and encoded through the same `write` and `evaluate`.

    `add` refuses (returns False) an event older than ``w - retention_s`` of the last
    compaction, as the worker's lateness rule would have.
    """

    def __init__(
        self, layout: StateLayout, blob: bytes | None = None, budget: int | None = None
    ) -> None:
        self.layout = layout
        self.blob = blob
        self.budget = budget  # events above the horizon before compacting (None: default)
        self._pending: list[tuple[float, int, Mapping[str, Any], Sequence[bool] | None]] = []

    @classmethod
    def from_bytes(cls, layout: StateLayout, blob: bytes | None) -> EntityState:
        state = cls(layout, blob)
        decode(layout, [blob])  # refuse another layout or format now
        return state

    @property
    def meta(self) -> Meta | None:
        return decode(self.layout, [self._flushed()]).metas[0]

    @property
    def watermark(self) -> float | None:
        meta = self.meta
        return None if meta is None else meta.w

    def add(
        self, ts: float, seq: int, values: Mapping[str, Any], passes: Sequence[bool] | None = None
    ) -> bool:
        if self.layout.is_late(ts, self.watermark):
            return False
        self._pending.append((float(ts), int(seq), dict(values), passes))
        return True

    def compact(self, watermark: float = -math.inf) -> None:
        self._flushed(watermark, force=True)

    def _flushed(self, watermark: float = -math.inf, force: bool = False) -> bytes | None:
        if not self._pending and watermark == -math.inf and not force:
            return self.blob
        layout = self.layout
        states = decode(layout, [self.blob], coded=True)
        rows = self._pending
        self._pending = []
        n = len(rows)
        passes = None
        if any(p is not None for *_, p in rows):
            passes = [[True] * len(layout.features) if p is None else list(p) for *_, p in rows]
        columns = {}
        for c in layout.columns:
            arr = np.empty(n, dtype=object)
            arr[:] = [r[2].get(c) for r in rows]
            columns[c] = arr
        new = Events.of(
            layout,
            np.zeros(n, dtype=np.int64),
            [r[0] for r in rows],
            [r[1] for r in rows],
            columns,
            passes,
        )
        newest = max((r[0] for r in rows), default=math.nan)
        self.blob = write(
            layout, states, new, np.array([watermark]), np.array([newest]), budget=self.budget
        )[0]
        return self.blob

    def to_bytes(self) -> bytes:
        blob = self._flushed()
        if blob is None:
            blob = write(
                self.layout,
                decode(self.layout, [None]),
                empty_events(self.layout),
                np.array([-np.inf]),
                np.array([np.nan]),
            )[0]
            self.blob = blob
        return blob

    def evaluate(self, t: float, only: Sequence[str] | None = None) -> dict[str, Any]:
        states = decode(self.layout, [self._flushed()])
        values = evaluate(self.layout, states, np.zeros(1, dtype=np.int64), [float(t)], only)
        return {name: column[0] for name, column in values.items()}
