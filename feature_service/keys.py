"""Entity keys: the one rule that turns join-key values into an entity's canonical id.

Every store and reader names an entity by this id: the worker and the backfill when they
write online state (`stream.source_processor`, `stream.backfill`), the lookups when they
read it (`online.service`), the training sets and the parity check when they match rows
to the offline log's events (`offline.historical`, `parity`). One rule here means an
entity written by one of them is found by all the others.

The id of one join key is the text of its value as Python writes it: strings as they
are, integers in decimal (``5`` and ``"5"`` are one entity, as JSON clients send either;
a whole float ``5.0`` too, the integer pandas holds as a float beside a null), any
other value by `str`. A composite key (an entity with `join_keys: [a, b]`) is the
JSON array of its values' texts, compact and in `join_keys` order: JSON escapes quotes
and backslashes, so no choice of values (a comma or a quote in one of them) can make
two tuples one id, and `EntityKey.values` reads the texts back.

A value names an entity when it is present (`key_present`: not null, not NaN, not the
empty string); a row or event with a join key that is not present has no id: the
stream skips the event for that view, and a lookup or a training-set row with one is
matched to nothing (NOT_FOUND, the values of no events).

>>> key = EntityKey(("customer_id",))
>>> key.id(["c1"]), key.id([42])
('c1', '42')
>>> key.ids([np.array(["c1", 7], dtype=object)]).tolist()
['c1', '7']
>>> EntityKey(("card", "merchant")).id(["c1", 9])
'["c1","9"]'
>>> EntityKey(("card", "merchant")).values('["c1","9"]')
('c1', '9')
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
import pyarrow.compute as pc


def key_present(column: npt.NDArray[Any] | pa.ChunkedArray | pa.Array) -> npt.NDArray[np.bool_]:
    """Which values of a join-key column name an entity: not null (None, NaN), not "".

    The one rule of "has this event (or row) a key for the view", for parsed batches
    (numpy) and the offline log (Arrow) alike.

    >>> key_present(np.array(["c1", None, "", float("nan")], dtype=object)).tolist()
    [True, False, False, False]
    """
    if isinstance(column, (pa.ChunkedArray, pa.Array)):
        present = pc.is_valid(column)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            present = pc.and_(present, pc.not_equal(column, "").fill_null(False))
        elif pa.types.is_floating(column.type):
            present = pc.and_(present, pc.invert(pc.is_nan(column)).fill_null(False))
        return np.asarray(present.to_numpy(zero_copy_only=False), dtype=np.bool_)
    values = np.asarray(column)
    if values.dtype.kind == "O":
        out: npt.NDArray[np.bool_] = ~pd.isna(values) & (values != "")
        return np.asarray(out, dtype=np.bool_)
    if values.dtype.kind == "f":
        return np.asarray(~np.isnan(values), dtype=np.bool_)
    if values.dtype.kind in "US":
        return np.asarray(values != "", dtype=np.bool_)
    return np.ones(values.shape, dtype=np.bool_)


def key_text(value: Any) -> str:
    """The text of one join-key value. A whole float is the integer's text: `5.0` is the
    id `5`, as the API reads a JSON `5.0` (`request_fields`), and as pandas gives the
    integers of a column with nulls (floats) in an entity file or the offline log.

    >>> key_text("c1"), key_text(5), key_text(np.int64(5)), key_text(5.0), key_text(5.5)
    ('c1', '5', '5', '5', '5.5')
    """
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return str(int(value))
    return str(value)


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
    ['1.5', '2']
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


def _present_value(value: Any) -> bool:
    """`key_present` of one value (a lookup's, a parity point's)."""
    if value is None or (isinstance(value, str) and not value):
        return False
    return not (isinstance(value, float) and value != value)  # NaN


def _tuple_ids(texts: Sequence[npt.NDArray[Any]]) -> npt.NDArray[Any]:
    """The composite ids of rows whose key texts are `texts` (one object array per join
    key, no nulls): each distinct tuple is encoded once."""
    n = len(texts[0])
    code = np.zeros(n, dtype=np.int64)
    for column in texts:
        of_column, uniques = pd.factorize(column)
        # < n * n: fits int64 for any table that fits in memory; factorized back to < n
        code, _ = pd.factorize(code * max(len(uniques), 1) + of_column)
    _, first = np.unique(code, return_index=True)
    ids = np.empty(first.size, dtype=object)
    ids[:] = [orjson.dumps([str(c[i]) for c in texts]).decode() for i in first.tolist()]
    out: npt.NDArray[Any] = ids[code]
    return out


def _key_array(column: Any) -> npt.NDArray[Any]:
    """A join-key column as numpy, a pandas extension column (nullable integers) as
    objects: its own values and None, never floats."""
    if isinstance(column, pd.Series | pd.Index) and isinstance(
        column.dtype, pd.api.extensions.ExtensionDtype
    ):
        return np.asarray(column.astype(object).where(column.notna(), None), dtype=object)
    return np.asarray(column)


@dataclass(frozen=True)
class EntityKey:
    """The join keys of an entity, in order, and the id of their values (module doc).

    >>> pair = EntityKey(("customer_id", "merchant_id"))
    >>> pair.id_list([["c1", "c2", None], ["m1", "", "m3"]])
    ['["c1","m1"]', None, None]
    >>> pair.row_ids([np.array(["c1", None]), np.array([7, 7])]).tolist()
    ['["c1","7"]', None]
    """

    join_keys: tuple[str, ...]

    @property
    def composite(self) -> bool:
        """Several join keys."""
        return len(self.join_keys) > 1

    def id(self, values: Sequence[Any]) -> str:
        """The id of one entity from its join-key values (in `join_keys` order)."""
        if len(self.join_keys) == 1:
            return key_text(values[0])
        return orjson.dumps([key_text(v) for v in values]).decode()

    def values(self, entity_id: str) -> tuple[str, ...]:
        """The texts of the join-key values an id was made of (the inverse of `id`)."""
        if len(self.join_keys) == 1:
            return (entity_id,)
        return tuple(orjson.loads(entity_id))

    def present(self, columns: Sequence[Any]) -> npt.NDArray[np.bool_]:
        """Which rows of the join-key `columns` (in `join_keys` order; numpy or Arrow)
        have every key present (`key_present`)."""
        out = key_present(columns[0])
        for column in columns[1:]:
            out = out & key_present(column)
        return out

    def id_list(self, columns: Sequence[Sequence[Any]]) -> list[str | None]:
        """The ids of a few entities (a lookup's), in plain Python: no array set-up;
        None for a row with a join key not present (it names no entity).

        >>> EntityKey(("customer_id",)).id_list([["c1", 2, None, ""]])
        ['c1', '2', None, None]
        """
        if len(self.join_keys) == 1:
            return [key_text(v) if _present_value(v) else None for v in columns[0]]
        return [
            self.id(row) if all(_present_value(v) for v in row) else None
            for row in zip(*columns, strict=True)
        ]

    def ids(self, columns: Sequence[npt.ArrayLike]) -> npt.NDArray[Any]:
        """The ids of many entities from their join-key columns (in `join_keys` order),
        every key present (events a view takes)."""
        if len(self.join_keys) == 1:
            return key_texts(columns[0])
        return _tuple_ids([key_texts(c) for c in columns])

    def row_ids(self, columns: Sequence[npt.ArrayLike]) -> npt.NDArray[Any]:
        """`ids` of rows that may lack a key (a training set's entity rows): None there.
        A pandas column of nullable integers (`Int64`) keeps its integers (numpy would
        make them floats, `1.0`, another id).

        >>> EntityKey(("a",)).row_ids([pd.Series([1, None], dtype="Int64")]).tolist()
        ['1', None]
        """
        arrays = [_key_array(c) for c in columns]
        present = self.present(arrays)
        out = np.full(len(present), None, dtype=object)
        if present.any():
            out[present] = self.ids([a[present] for a in arrays])
        return out

    def arrow_ids(
        self, columns: Sequence[pa.Array | pa.ChunkedArray]
    ) -> pa.Array | pa.ChunkedArray:
        """The ids of the offline log's events (Arrow join-key columns) as Arrow strings;
        null where a key is null (one key: `arrow_key_texts`, in C)."""
        if len(self.join_keys) == 1:
            return arrow_key_texts(columns[0])
        present = self.present(columns)
        out = np.full(len(present), None, dtype=object)
        if present.any():
            where = pa.array(np.flatnonzero(present))
            texts = [
                np.asarray(
                    arrow_key_texts(c.take(where)).to_numpy(zero_copy_only=False), dtype=object
                )
                for c in columns
            ]
            out[present] = _tuple_ids(texts)
        return pa.array(out, type=pa.string())
