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
- The state layout (`aggregation.state.StateLayout`: what an entity's online state
  keeps of each event) and the columns the view reads.

Plans are built once per view (views are immutable and hashed by identity).

>>> from feature_service.definitions import load_definitions
>>> view = load_definitions("definitions").feature_views["customer_txn"]  # doctest: +SKIP
>>> view_plan(view).late(np.array([0.0, 10.0]), np.array([1e9, np.nan]))  # doctest: +SKIP
array([ True, False])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from feature_service.aggregation.state import StateLayout
from feature_service.definitions import FeatureView

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
    """Columns a fold of the view reads: its join key, aggregated columns and filters'."""

    def __post_init__(self) -> None:
        view = self.view
        kinds = {
            c: k for f in view.features if (c := f.column) and (k := view.source.schema.get(c))
        }
        layout = StateLayout(list(view.features), kinds, retention_s=view.retention_s)
        where_columns = sorted({c for f in view.features if f.where for c in f.where.columns})
        needed = {view.entity.join_key, *layout.columns, *where_columns}
        object.__setattr__(self, "layout", layout)
        object.__setattr__(self, "where_columns", tuple(where_columns))
        object.__setattr__(self, "needed_columns", tuple(sorted(needed)))

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


@lru_cache(maxsize=1024)
def view_plan(view: FeatureView) -> ViewPlan:
    """The plan of `view`, built once."""
    return ViewPlan(view)
