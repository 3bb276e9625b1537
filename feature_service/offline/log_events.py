"""The offline log's events of one view, read once with their place in the stream.

Every reader of the log that aggregates or samples a view's events (training sets,
the backfill, the parity check) reads it here: the columns it needs plus the event time,
partition, offset and watermark before the event, and the rule of which events a
reader bounded by offsets sees (`below`): those below each partition's limit, none of
a partition the limits do not name.

>>> np.flatnonzero(below_offsets(np.array([0, 0, 1, 2]), np.array([4, 9, 0, 0]), {0: 5, 1: 3}))
array([0, 2])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from feature_service.definitions import FeatureView
from feature_service.events.parsing import column_from_arrow
from feature_service.offline.event_log import EventLog
from feature_service.plan import computed_columns, event_seq, view_plan

META_COLUMNS = ("event_ts", "_partition", "_offset", "_watermark")
"""What the log keeps of each event beside the source's columns (`offline.event_log`)."""


def below_offsets(
    partition: npt.NDArray[np.int64], offset: npt.NDArray[np.int64], limits: Mapping[int, int]
) -> npt.NDArray[np.bool_]:
    """Which events lie below their partition's limit (none of a partition not named)."""
    limit = np.full(int(partition.max(initial=-1)) + 1, -1, dtype=np.int64)
    for p, o in limits.items():
        if 0 <= p < limit.size:
            limit[p] = o
    out: npt.NDArray[np.bool_] = offset < limit[partition]
    return out


@dataclass
class LogEvents:
    """A view's events in the offline log, in the log's order: `table` holds the columns
    read, the arrays their time and place (`seq`: the ordering tiebreak)."""

    table: pa.Table
    ts: npt.NDArray[np.float64]
    partition: npt.NDArray[np.int64]
    offset: npt.NDArray[np.int64]
    watermark: npt.NDArray[np.float64]

    @classmethod
    def read(cls, view: FeatureView, log: EventLog, columns: Sequence[str]) -> LogEvents:
        """`columns` of every event of the view's source, each (partition, offset) once;
        computed columns are evaluated from the columns they read (`plan.computed_columns`)."""
        source = view.source
        wanted = [c for c in dict.fromkeys(columns) if c not in META_COLUMNS]
        raw = source.raw_columns(wanted)
        table = log.scan(source, [*raw, *(c for c in META_COLUMNS if c not in raw)])
        computed = [c for c in wanted if c not in source.schema and c in dict(source.computed)]
        if computed:
            n = table.num_rows
            arrays = {c: column_from_arrow(table[c], source.schema[c]) for c in raw}
            added = computed_columns(source, arrays, n)
            kinds = source.column_kinds
            for c in computed:
                table = table.append_column(c, _arrow(added[c], kinds[c]))
        return cls(
            table,
            np.asarray(table["event_ts"].to_numpy(), dtype=np.float64),
            np.asarray(table["_partition"].to_numpy(), dtype=np.int64),
            np.asarray(table["_offset"].to_numpy(), dtype=np.int64),
            np.asarray(table["_watermark"].to_numpy(), dtype=np.float64),
        )

    def below(self, limits: Mapping[int, int] | None) -> npt.NDArray[np.bool_]:
        """Which events a reader bounded by `limits` sees (None: every one)."""
        if limits is None:
            return np.ones(self.ts.size, dtype=np.bool_)
        return below_offsets(self.partition, self.offset, limits)

    def taken(self, view: FeatureView) -> npt.NDArray[np.bool_]:
        """Which events the view takes (its join key present, `plan.ViewPlan.takes`)."""
        return view_plan(view).takes(self.table)

    def late(self, view: FeatureView) -> npt.NDArray[np.bool_]:
        """Which events are late for the view (`plan.ViewPlan.late`)."""
        return view_plan(view).late(self.ts, self.watermark)

    def seq(self, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.int64]:
        """The ordering tiebreak of the events at `rows` (`plan.event_seq`)."""
        return event_seq(self.offset[rows], self.partition[rows])


def _arrow(values: npt.NDArray[Any], kind: str) -> pa.Array:
    """A computed column as the log would hold it, so `column_from_arrow` gives it back
    unchanged (float64 with NaN; booleans and strings with nulls)."""
    if kind == "float":
        return pa.array(values, type=pa.float64())
    return pa.array(list(values), type=pa.bool_() if kind == "bool" else pa.string())
