"""Aggregation: the algebra of the features, window arithmetic and exact tile state.

- `algebra`: one class per aggregation over JSON-able intermediate states (`AGGREGATORS`).
- `windows`: every window and tile boundary (`default_hop`, `window_start`, `tile_start`).
- `tiles`: the multi-resolution tile state of one entity of one view (`TileLayout`,
  `TileState`), laid out as a flat field mapping for one Redis hash.
- `reference`: a brute-force implementation of the contract, for tests.
"""

from feature_service.aggregation.algebra import AGGREGATORS, IR, PRESENT, Aggregator
from feature_service.aggregation.spec import FeatureLike, FeatureSpec
from feature_service.aggregation.tiles import (
    Compaction,
    LayoutMismatchError,
    NeedMoreFields,
    OutsideRetentionError,
    TileLayout,
    TileState,
    decode_field,
    encode_field,
)
from feature_service.aggregation.windows import (
    cover,
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
    "Compaction",
    "FeatureLike",
    "FeatureSpec",
    "LayoutMismatchError",
    "NeedMoreFields",
    "OutsideRetentionError",
    "TileLayout",
    "TileState",
    "cover",
    "decode_field",
    "default_hop",
    "encode_field",
    "tile_start",
    "tile_starts",
    "window_start",
]
