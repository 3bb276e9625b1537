"""Aggregation: the algebra of the features, window arithmetic and the online state.

- `algebra`: one class per aggregation: its IR (fold, merge, finalize) and its
  evaluation of many windows over sorted events (`over_windows`), `AGGREGATORS`.
- `windows`: every window boundary (`default_hop`, `window_start`, `tile_start`).
- `window_events`: sorted events and the binary searches of windows (`EventIndex`).
- `state`: an entity's online state, its packed retained events (`StateLayout`,
  `EntityState`, `write`, `evaluate`), shared by the worker, the backfill and the reader.
- `reference`: a brute-force implementation of the contract, for tests.
"""

from feature_service.aggregation.algebra import AGGREGATORS, IR, PRESENT, Aggregator
from feature_service.aggregation.spec import FeatureLike, FeatureSpec
from feature_service.aggregation.state import (
    EntityState,
    LayoutMismatchError,
    OutsideRetentionError,
    StateLayout,
)
from feature_service.aggregation.windows import (
    default_hop,
    tile_start,
    tile_starts,
    window_start,
)

__all__ = [
    "AGGREGATORS",
    "IR",
    "PRESENT",
    "Aggregator",
    "EntityState",
    "FeatureLike",
    "FeatureSpec",
    "LayoutMismatchError",
    "OutsideRetentionError",
    "StateLayout",
    "default_hop",
    "tile_start",
    "tile_starts",
    "window_start",
]
