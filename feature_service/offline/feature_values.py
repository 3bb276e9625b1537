"""Training-set values of list and map features in Arrow: typed as their aggregation
states (Arrow would infer a struct from a dict), and read back as the Python lists and
dicts the online API serves, so the two compare equal.

>>> import pandas as pd
>>> frame = pd.DataFrame({"n": [1, 2], "top": [{"a": 2}, None]})
>>> table = to_arrow(frame, {"top": pa.map_(pa.string(), pa.int64())})
>>> str(table.schema.field("top").type), from_arrow(table["top"]).tolist()
('map<string, int64>', [{'a': 2}, None])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from feature_service.aggregation.spec import aggregation_of
from feature_service.definitions import Registry


def is_nested(kind: pa.DataType) -> bool:
    """A list or map type: values Arrow cannot infer from Python objects reliably."""
    return bool(pa.types.is_list(kind) or pa.types.is_map(kind))


def nested_types(registry: Registry, refs: Mapping[str, str]) -> dict[str, pa.DataType]:
    """The stated Arrow type of each output column (name -> ``view:feature``) whose
    values are lists or maps (derived features are numbers, strings or booleans)."""
    out = {}
    for name, ref in refs.items():
        view_name, _, feature_name = ref.partition(":")
        view = registry.feature_views[view_name]
        feature = next((f for f in view.features if f.name == feature_name), None)
        if feature is None:  # a derived feature
            continue
        column_kind = None if feature.column is None else view.source.column_kinds[feature.column]
        kind = aggregation_of(feature).value_type(column_kind).arrow
        if is_nested(kind):
            out[name] = kind
    return out


def to_arrow(frame: pd.DataFrame, nested: Mapping[str, pa.DataType]) -> pa.Table:
    """`frame` as an Arrow table, the columns of `nested` with their types."""
    plain = [c for c in frame.columns if c not in nested]
    table = pa.Table.from_pandas(frame[plain], preserve_index=False)
    for name, kind in nested.items():
        if name in frame.columns:
            table = table.append_column(pa.field(name, kind), pa.array(_objects(frame[name]), kind))
    return table.select([str(c) for c in frame.columns])


def _objects(column: pd.Series) -> list[Any]:
    return [None if v is None or (isinstance(v, float) and v != v) else v for v in column]


def from_arrow(column: pa.ChunkedArray | pa.Array) -> npt.NDArray[Any]:
    """A list or map column as Python lists and dicts (None: null), as objects."""
    values = column.to_pylist()
    if pa.types.is_map(column.type):
        values = [None if v is None else dict(v) for v in values]
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def write_parquet(frame: pd.DataFrame, path: Any, nested: Mapping[str, pa.DataType]) -> None:
    """`frame` to a Parquet file, list and map columns typed (`to_arrow`)."""
    import pyarrow.parquet as pq

    pq.write_table(to_arrow(frame, nested), path)
