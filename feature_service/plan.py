"""The compiled plan of a feature view: the rules that decide which events count, in
what order, and for which features. Every reader and writer of a view's state calls it:
the stream worker, the backfill, the training sets, the feature log and the parity
check, so none of them can drift from the others.

- Lateness: an event is late for a view when ``event_ts < watermark_before -
  allowed_lateness`` (the watermark being the newest event time of its partition at
  lower offsets, `_watermark` in the offline log); a NaN or absent watermark is never
  late. Late events are counted, kept in the offline log, and left out of online state
  and training sets alike.
- Ordering: ties in event time (``first``, ``last``) break on
  ``seq = offset * SEQ_PARTITION_SLOTS + partition``, which the offline log can
  recompute from `_offset` and `_partition`.
- `where`: the per-feature filter results of a batch as one ``(events, features)``
  boolean matrix, each distinct filter evaluated once.
- Keys: a view takes an event when the event carries the view's join key (each of
  them, for an entity with several), neither null (None, NaN) nor the empty string
  (`keys.key_present`, `ViewPlan.takes`). An event without one view's key still
  counts in the other views of its source; each view
  counts the events it skipped (`skipped:<view>` in `fs:stats`). Only an event no view
  of its source can take is refused, to the dead-letter topic (`SourcePlan.parse`:
  the worker and `/push` parse through it, so they refuse the same events). Backfill,
  training sets and the parity check leave the same events out of the same views.
- Computed columns (a source's `columns:`): evaluated per event before anything else
  reads the event (`computed_columns`): in `SourcePlan.parse` for the worker and
  `/push`, and from the log's columns for the backfill, training sets and the parity
  check (`offline.log_events.LogEvents.read`), by the same expressions.
- The state layout (`aggregation.state.StateLayout`: what an entity's online state
  keeps of each event) and the columns the view reads.

Plans are built once per view (views are immutable and hashed by identity).

>>> from feature_service.definitions import load_definitions
>>> view = load_definitions("definitions").feature_views["customer_txn"]  # doctest: +SKIP
>>> view_plan(view).late(np.array([0.0, 10.0]), np.array([1e9, np.nan]))  # doctest: +SKIP
array([ True, False])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from feature_service.aggregation.state import StateLayout
from feature_service.definitions import FeatureView, Registry, Source
from feature_service.events.parsing import ParsedBatch, Rejection, parse_records
from feature_service.keys import key_present

__all__ = ["SourcePlan", "ViewPlan", "event_seq", "key_present", "source_plan", "view_plan"]

SEQ_PARTITION_SLOTS = 4096
"""Partitions a topic may have for `event_seq` to order its events uniquely."""


def event_seq(
    offsets: npt.NDArray[np.int64], partitions: npt.NDArray[np.int64] | int
) -> npt.NDArray[np.int64]:
    """The ordering tiebreak of events: ``offset * SEQ_PARTITION_SLOTS + partition``.

    >>> event_seq(np.array([0, 1]), 2).tolist()
    [2, 4098]
    """
    seq: npt.NDArray[np.int64] = np.asarray(offsets, dtype=np.int64) * SEQ_PARTITION_SLOTS
    return seq + partitions


@dataclass(frozen=True, eq=False)
class ViewPlan:
    """What a feature view compiles to; see the module docstring."""

    view: FeatureView
    layout: StateLayout = field(init=False)
    where_columns: tuple[str, ...] = field(init=False)
    """Columns the view's `where` filters read."""
    needed_columns: tuple[str, ...] = field(init=False)
    """Columns a fold of the view reads: its join keys, aggregated columns and filters'."""

    def __post_init__(self) -> None:
        view = self.view
        all_kinds = view.source.column_kinds
        kinds = {c: k for f in view.features if (c := f.column) and (k := all_kinds.get(c))}
        layout = StateLayout(list(view.features), kinds, retention_s=view.retention_s)
        where_columns = sorted({c for f in view.features if f.where for c in f.where.columns})
        needed = {*view.entity.join_keys, *layout.columns, *where_columns}
        object.__setattr__(self, "layout", layout)
        object.__setattr__(self, "where_columns", tuple(where_columns))
        object.__setattr__(self, "needed_columns", tuple(sorted(needed)))

    def takes(self, columns: Mapping[str, Any]) -> npt.NDArray[np.bool_]:
        """Which events (given as `columns`, at least the join keys) the view takes:
        those whose join keys are all present (`key_present`)."""
        key = self.view.entity.key
        return key.present([columns[c] for c in key.join_keys])

    def late(
        self, ts: npt.NDArray[np.float64], watermark_before: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.bool_]:
        """Which events are late for the view (NaN watermark: never)."""
        with np.errstate(invalid="ignore"):
            late: npt.NDArray[np.bool_] = ts < watermark_before - self.view.allowed_lateness_s
        return late

    def passes(self, columns: Mapping[str, npt.NDArray[Any]], n: int) -> npt.NDArray[np.bool_]:
        """The ``(n, features)`` matrix of `where` results (True where a feature has none)
        for `n` events given as `columns` (at least `where_columns`)."""
        out = np.ones((n, len(self.view.features)), dtype=np.bool_)
        done: dict[str, npt.NDArray[np.bool_]] = {}
        for i, feature in enumerate(self.view.features):
            if feature.where is None:
                continue
            mask = done.get(feature.where.text)
            if mask is None:
                mask = done[feature.where.text] = self.where_mask(i, columns, n)
            out[:, i] = mask
        return out

    def where_mask(
        self, feature: int, columns: Mapping[str, npt.NDArray[Any]], n: int
    ) -> npt.NDArray[np.bool_]:
        """The `where` result of the view's `feature`-th feature for `n` events (all
        True without a filter); a comparison with a null is false."""
        where = self.view.features[feature].where
        if where is None:
            return np.ones(n, dtype=np.bool_)
        return where.evaluate_columns({c: columns[c] for c in where.columns}, n)


def computed_columns(
    source: Source, columns: Mapping[str, npt.NDArray[Any]], n: int
) -> dict[str, npt.NDArray[Any]]:
    """`columns` (of `n` events, as `events.parsing` builds them) with the source's
    computed columns added, each evaluated over the columns before it: float64 (NaN
    null) for numbers, objects for booleans and strings, as a parsed column of that
    kind. The worker, `/push`, the backfill and training sets all add them here."""
    if not source.computed:
        return dict(columns)
    out = dict(columns)
    for name, expr in source.computed:
        out[name] = expr.evaluate_columns({c: out[c] for c in expr.names}, n)
    return out


@lru_cache(maxsize=1024)
def view_plan(view: FeatureView) -> ViewPlan:
    """The plan of `view`, built once."""
    return ViewPlan(view)


@dataclass(frozen=True)
class SourcePlan:
    """The views of one source, and which of them take each event.

    >>> plan = source_plan(registry, "transactions")  # doctest: +SKIP
    >>> event = b'{"customer_id": "c1", "merchant_id": null, ...}'
    >>> batch = plan.parse([(0, event)])  # doctest: +SKIP
    >>> plan.takers(batch.columns).tolist()  # doctest: +SKIP
    [[True, False]]
    """

    source: Source
    views: tuple[FeatureView, ...]

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The distinct join keys of the views, in view order."""
        return tuple(dict.fromkeys(c for v in self.views for c in v.entity.join_keys))

    def takers(self, columns: Mapping[str, Any]) -> npt.NDArray[np.bool_]:
        """The ``(events, views)`` matrix: whether each view takes each event."""
        present = {c: key_present(columns[c]) for c in self.key_columns}
        n = len(next(iter(present.values()))) if present else 0
        out = np.ones((n, len(self.views)), dtype=np.bool_)
        for i, view in enumerate(self.views):
            for c in view.entity.join_keys:
                out[:, i] &= present[c]
        return out

    def parse(
        self,
        records: Sequence[tuple[int, bytes | None]],
        written_at: Sequence[float | None] | None = None,
    ) -> ParsedBatch:
        """`events.parsing.parse_records`, and events no view can take refused too,
        with a reason naming their keys. A source without views refuses none of them
        (nothing reads it yet)."""
        batch = self._parse(records, written_at)
        batch.columns = computed_columns(self.source, batch.columns, len(batch))
        return batch

    def _parse(
        self,
        records: Sequence[tuple[int, bytes | None]],
        written_at: Sequence[float | None] | None,
    ) -> ParsedBatch:
        batch = parse_records(self.source, records, written_at)
        if not self.views or not len(batch):
            return batch
        taken = self.takers(batch.columns).any(axis=1)
        if taken.all():
            return batch
        values = dict(records)
        refused = [
            Rejection(offset, self._why(batch, i), values.get(offset))
            for i, offset in zip(
                np.flatnonzero(~taken).tolist(), batch.offsets[~taken].tolist(), strict=True
            )
        ]
        return ParsedBatch(
            offsets=batch.offsets[taken],
            ts=batch.ts[taken],
            columns={name: column[taken] for name, column in batch.columns.items()},
            rejected=sorted([*batch.rejected, *refused], key=lambda r: r.offset),
        )

    def _why(self, batch: ParsedBatch, i: int) -> str:
        missing = [
            f"key field {c!r} is {'empty' if batch.columns[c][i] == '' else 'null'}"
            for c in self.key_columns
            if not key_present(batch.columns[c][i : i + 1])[0]
        ]
        return "no feature view can take the event: " + ", ".join(missing)


def source_plan(registry: Registry, source: str) -> SourcePlan:
    """The plan of `registry`'s source named `source` (cheap: built on demand)."""
    return SourcePlan(registry.sources[source], tuple(registry.views_of_source(source)))
