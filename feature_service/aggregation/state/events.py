"""Containers of decoded state: `Events` (the retained events of many entities, as
columns), `Meta` (an entity's state apart from its events), `States` (both, for many
entities)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from feature_service.aggregation.base import IR
from feature_service.aggregation.state.layout import StateLayout
from feature_service.aggregation.window_events import Float, Int


@dataclass
class Meta:
    """An entity's state apart from its events."""

    version: int = 0
    w: float | None = None
    last: float | None = None
    base: list[IR] | None = None
    base_hi: float | None = None
    applied: dict[str, int] = field(default_factory=dict)
    backfilled: bool = False
    horizon: float | None = None
    """Compacted (a busy entity): events below it are kept per hop (`summary`)."""
    summary: bytes | None = None
    """The stored form of the compacted hops (`state.summary.encode_summary`)."""
    kept: list[Any] | None = None
    """`summary` decoded (`state.summary.Kept` per group), once needed."""


@dataclass
class Events:
    """Events of many entities: ``code`` is each event's entity (an index)."""

    code: Int
    ts: Float
    seq: Int
    flags: npt.NDArray[np.bool_]  # (n, filters)
    columns: dict[str, npt.NDArray[Any]]
    witness: npt.NDArray[np.bool_] | None = None  # a compacted event kept as a witness

    def __len__(self) -> int:
        return int(self.ts.size)

    @property
    def witnesses(self) -> npt.NDArray[np.bool_]:
        return np.zeros(self.ts.size, dtype=np.bool_) if self.witness is None else self.witness

    def take(self, idx: npt.NDArray[Any]) -> Events:
        return Events(
            self.code[idx],
            self.ts[idx],
            self.seq[idx],
            self.flags[idx],
            {c: v[idx] for c, v in self.columns.items()},
            None if self.witness is None else self.witness[idx],
        )

    @classmethod
    def concat(cls, layout: StateLayout, pieces: Sequence[Events]) -> Events:
        """The events of `pieces` end to end (no pieces: an empty `Events`). Empty pieces
        are left out; one piece left is returned as it is (its columns' types too)."""
        if not pieces:
            return empty_events(layout)
        full = [p for p in pieces if len(p)]
        if len(full) <= 1:
            return full[0] if full else pieces[0]
        pieces = full
        return cls(
            np.concatenate([p.code for p in pieces]),
            np.concatenate([p.ts for p in pieces]),
            np.concatenate([p.seq for p in pieces]),
            np.concatenate([p.flags for p in pieces]),
            {c: np.concatenate([p.columns[c] for p in pieces]) for c in layout.columns},
            None
            if all(p.witness is None for p in pieces)
            else np.concatenate([p.witnesses for p in pieces]),
        )

    @classmethod
    def of(
        cls,
        layout: StateLayout,
        code: npt.ArrayLike,
        ts: npt.ArrayLike,
        seq: npt.ArrayLike,
        columns: Mapping[str, npt.ArrayLike],
        passes: npt.ArrayLike | None = None,
    ) -> Events:
        """Events from arrays: `columns` holds (at least) the layout's columns, absent
        ones are null; `passes` is the ``(n, features)`` matrix of `where` results."""
        ts_a = np.asarray(ts, dtype=np.float64)
        n = ts_a.size
        cols = {}
        for c in layout.columns:
            if c in columns:
                arr = np.asarray(columns[c])
                if arr.shape != (n,):
                    raise ValueError(f"column {c!r} must have one value per event")
            else:
                arr = np.full(n, None, dtype=object)
            cols[c] = _stored_column(arr, c in layout.binary)
        return cls(
            np.asarray(code, dtype=np.int64).reshape(n),
            ts_a,
            np.asarray(seq, dtype=np.int64).reshape(n),
            layout.filter_flags(passes, n),
            cols,
        )


def _stored_column(values: npt.NDArray[Any], binary: bool) -> npt.NDArray[Any]:
    if binary:
        if values.dtype.kind == "O":
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        return values.astype(np.float64, copy=False)
    return values if values.dtype.kind == "O" else values.astype(object)


def empty_events(layout: StateLayout) -> Events:
    return Events.of(layout, [], [], [], {})


@dataclass
class States:
    """Decoded states of many entities: `metas[i]` is None where entity i has none;
    `events` are sorted by (code, ts, seq)."""

    metas: list[Meta | None]
    events: Events
    words: dict[str, npt.NDArray[Any]] | None = None
    """With `decode(coded=True)`: per JSON column the distinct values of each entity end
    to end (plus a last null slot), and `events.columns[c]` indexes them."""
