"""Aggregation: the aggregations of the features, window arithmetic and the online state.

- `base`: the `Aggregation` class, all an aggregation declares and does;
  `kinds/`: one aggregation per file; `registry`: the name -> class table
  (`AGGREGATIONS`, `aggregation`).
- `windows`: every window boundary (`default_hop`, `window_start`, `hop_start`).
- `window_events`: sorted events and the binary searches of windows (`EventIndex`).
- `state`: an entity's online state, its packed retained events (`StateLayout`,
  `write`, `evaluate`), shared by the worker, the backfill and the reader.
- `reference`: a brute-force implementation of the contract, for tests.
"""

from feature_service.aggregation.base import IR, PRESENT, Aggregation
from feature_service.aggregation.registry import AGGREGATIONS, aggregation
from feature_service.aggregation.spec import FeatureLike, FeatureSpec
from feature_service.aggregation.state import (
    LayoutMismatchError,
    OutsideRetentionError,
    StateLayout,
)
from feature_service.aggregation.windows import (
    default_hop,
    hop_start,
    hop_starts,
    window_start,
)

__all__ = [
    "AGGREGATIONS",
    "IR",
    "PRESENT",
    "Aggregation",
    "FeatureLike",
    "FeatureSpec",
    "LayoutMismatchError",
    "OutsideRetentionError",
    "StateLayout",
    "aggregation",
    "default_hop",
    "hop_start",
    "hop_starts",
    "window_start",
]
