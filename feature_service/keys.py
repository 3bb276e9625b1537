"""Entity keys: the one rule that turns join-key values into an entity's canonical id.

Every store and reader names an entity by this id: the worker and the backfill when they
write online state (`stream.source_processor`, `stream.backfill`), the lookups when they
read it (`online.service`), the training sets and the parity check when they match rows
to the offline log's events (`offline.historical`, `parity`). One rule here means an
entity written by one of them is found by all the others.

The id of one join key is the text of its value as Python writes it: strings as they
are, integers in decimal (``5`` and ``"5"`` are one entity, as JSON clients send either),
any other value by `str`. A composite key (several join keys) is the JSON array of its
values' texts, so no choice of values can make two keys one id.

>>> key = EntityKey(("customer_id",))
>>> key.id(["c1"]), key.id([42])
('c1', '42')
>>> key.ids([np.array(["c1", 7], dtype=object)]).tolist()
['c1', '7']
>>> EntityKey(("card", "merchant")).id(["c1", 9])
'["c1","9"]'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import pyarrow as pa


def key_text(value: Any) -> str:
    """The text of one join-key value.

    >>> key_text("c1"), key_text(5), key_text(np.int64(5))
    ('c1', '5', '5')
    """
    return value if isinstance(value, str) else str(value)


def key_texts(column: npt.ArrayLike) -> npt.NDArray[Any]:
    """`key_text` of each value of a column, as an object array (vectorised for strings).

    >>> key_texts(np.array([1, 2])).tolist(), key_texts(np.array(["a"], dtype=object)).tolist()
    (['1', '2'], ['a'])
    """
    values = np.asarray(column)
    if values.dtype.kind == "O" and all(isinstance(v, str) for v in values[:1]):
        try:
            return np.asarray(pd.Index(values).astype(str).to_numpy(), dtype=object)
        except (TypeError, ValueError):  # pragma: no cover
            pass
    return np.asarray([key_text(v) for v in values.tolist()], dtype=object)


def arrow_key_texts(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """`key_text` of each value of an Arrow column, as Arrow strings (nulls stay null):
    Arrow's own cast where it writes what `key_text` does (strings, integers).

    >>> arrow_key_texts(pa.array([5, None])).to_pylist()
    ['5', None]
    >>> arrow_key_texts(pa.array([1.5, 2.0])).to_pylist()
    ['1.5', '2.0']
    """
    kind = column.type
    if pa.types.is_dictionary(kind):  # e.g. read from Parquet: the values decide
        kind = kind.value_type
    if pa.types.is_string(column.type):
        return column
    if pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.cast(pa.string())  # what `key_text` writes, in C
    return pa.array(
        [None if v is None else key_text(v) for v in column.to_pylist()], type=pa.string()
    )


@dataclass(frozen=True)
class EntityKey:
    """The join keys of an entity, in order, and the id of their values (module doc)."""

    join_keys: tuple[str, ...]

    def id(self, values: Sequence[Any]) -> str:
        """The id of one entity from its join-key values (in `join_keys` order)."""
        if len(self.join_keys) == 1:
            return key_text(values[0])
        return orjson.dumps([key_text(v) for v in values]).decode()

    def id_list(self, columns: Sequence[Sequence[Any]]) -> list[str]:
        """The ids of a few entities (a lookup's), in plain Python: no array set-up.

        >>> EntityKey(("customer_id",)).id_list([["c1", 2]])
        ['c1', '2']
        """
        if len(self.join_keys) == 1:
            return [key_text(v) for v in columns[0]]
        return [self.id(row) for row in zip(*columns, strict=True)]

    def ids(self, columns: Sequence[npt.ArrayLike]) -> npt.NDArray[Any]:
        """The ids of many entities from their join-key columns (in `join_keys` order)."""
        if len(self.join_keys) == 1:
            return key_texts(columns[0])
        texts = [key_texts(c) for c in columns]
        out = np.empty(len(texts[0]), dtype=object)
        out[:] = [orjson.dumps(list(row)).decode() for row in zip(*texts, strict=True)]
        return out
