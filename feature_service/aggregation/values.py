"""Values as the aggregations see them: what is null, numbers as float64, and which
values are one distinct value.

Shared by the aggregation kinds (`aggregation.kinds`), the window evaluation over sorted
events (`aggregation.window_events`) and the online state's compaction, so a null, a
number or a distinct value means the same everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

EXACT_INT: Final[int] = 2**53
"""Integers up to this size are exact as float64."""


def is_null(value: Any) -> bool:
    """None and NaN are null; every other value (0, "", False) is not.

    >>> [is_null(v) for v in (None, float("nan"), 0.0, "", False)]
    [True, True, False, False, False]
    """
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return bool(value != value)
    return False


def non_null_mask(values: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Boolean array: which entries of `values` are not null (vectorised `is_null`).

    >>> non_null_mask(np.array([1.0, np.nan])).tolist()
    [True, False]
    >>> non_null_mask(np.array(["a", None], dtype=object)).tolist()
    [True, False]
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "fc":
        return ~np.isnan(arr)
    if arr.dtype.kind == "O":
        return ~pd.isna(arr)  # None and NaN, in C
    return np.ones(arr.shape, dtype=np.bool_)


def as_float_array(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """`values` as float64 with NaN for nulls; TypeError for non-numeric data.

    >>> as_float_array(np.array([1, None, True], dtype=object)).tolist()
    [1.0, nan, 1.0]
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64, copy=False)
    if arr.dtype.kind == "O":
        return np.fromiter(
            (math.nan if is_null(v) else to_float(v) for v in arr),
            dtype=np.float64,
            count=arr.size,
        )
    raise TypeError(f"a numeric aggregation needs numbers, not {arr.dtype} values")


def to_float(value: Any) -> float:
    """A number as a float; TypeError for text (a numeric aggregation over strings)."""
    if isinstance(value, str | bytes):
        raise TypeError(f"a numeric aggregation needs numbers, not {value!r}")
    return float(value)


def safe_means(
    x: npt.NDArray[np.float64], starts: npt.NDArray[np.intp], counts: npt.NDArray[np.intp]
) -> npt.NDArray[np.float64]:
    """Mean of each run ``x[starts[i]:starts[i] + counts[i]]`` (runs end to end), also where
    the run's sum overflows (then from ``x / count``: one more rounding per value, only
    for values near the float64 limit). Online reads and training sets both use it.

    >>> x = np.array([1.7e308, 1.7e308, 1.0, 3.0])
    >>> safe_means(x, np.array([0, 2]), np.array([2, 2])).tolist()
    [1.7e+308, 2.0]
    """
    with np.errstate(over="ignore", invalid="ignore"):
        means = np.add.reduceat(x, starts) / counts
        bad = ~np.isfinite(means)
        if bad.any():
            scaled = np.add.reduceat(x / np.repeat(counts, counts), starts)
            means[bad] = scaled[bad]
    return means


def py_scalar(value: Any) -> Any:
    """A numpy scalar as the Python scalar JSON understands.

    >>> type(py_scalar(np.float64(1.5))), py_scalar("a")
    (<class 'float'>, 'a')
    """
    return value.item() if isinstance(value, np.generic) else value


def numbers(values: Sequence[Any]) -> Iterator[float]:
    """The non-null values as floats (`to_float`: TypeError for text), in order.

    >>> list(numbers([1, None, float("nan"), 2.5]))
    [1.0, 2.5]
    """
    return (v if type(v) is float else to_float(v) for v in values if v is not None and v == v)


def numbers_in(values: Sequence[Any]) -> Iterator[Any]:
    """The values that are numbers (not null, not text), to size a tolerance by.

    >>> list(numbers_in([1, "a", None, float("nan"), 2.5, True]))
    [1, 2.5, True]
    """
    return (v for v in values if isinstance(v, int | float | np.number | np.bool_) and v == v)


def value_key(value: Any) -> tuple[int, Any]:
    """Total order over the scalars an IR may hold (numbers before strings).

    >>> sorted(["b", 2.0, "a", 1.0], key=value_key)
    [1.0, 2.0, 'a', 'b']
    """
    if isinstance(value, str):
        return (1, value)
    if isinstance(value, bool | int | float):
        return (0, value)
    return (2, repr(value))


def distinct_value(value: Any) -> Any:
    """The representative of `value` among distinct values: numbers as floats, strings
    as is. Numbers that compare equal (1, 1.0, True) are one distinct value, as in a
    Python set; `distinct_codes` is the same rule over arrays.

    >>> distinct_value(1), distinct_value(True), distinct_value(-0.0), distinct_value("1")
    (1.0, 1.0, 0.0, '1')
    """
    if type(value) is str:  # the common cases first: this runs once per value
        return value
    if type(value) is float:
        return value + 0.0
    value = py_scalar(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int):
        return float(value) if -EXACT_INT <= value <= EXACT_INT else value
    if isinstance(value, float):
        return value + 0.0  # -0.0 -> 0.0
    raise TypeError(f"distinct values are numbers or strings, not {value!r}")


def value_label(value: Any) -> str:
    """A distinct value (`distinct_value`) as the text key of a map value (a JSON
    object's keys are text): strings as they are, whole numbers without a fraction.

    >>> value_label("grocery"), value_label(3.0), value_label(2.5), value_label(True)
    ('grocery', '3', '2.5', '1')
    """
    value = distinct_value(value)
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) <= EXACT_INT:
        return str(int(value))
    return repr(value)


def distinct_codes(values: npt.NDArray[Any], kind: str | None) -> npt.NDArray[np.int64]:
    """One code per distinct value of `values` (non-null), by `distinct_value`'s rule:
    strings (schema `kind` "string") as themselves, numbers equal when equal as floats.

    >>> distinct_codes(np.array([1, 1.0, True, 2], dtype=object), None).tolist()
    [0, 0, 0, 1]
    """
    if kind == "string":
        return np.asarray(pd.factorize(values)[0], dtype=np.int64)
    return np.asarray(pd.factorize(as_float_array(values) + 0.0)[0], dtype=np.int64)


def plain_value(value: Any) -> Any:
    """A feature value of any evaluation path as the plain Python value JSON and
    comparisons take: numpy scalars as Python ones, every null (None, NaN, pandas NA,
    and a non-finite float, which no finalized value is) as None; a list value as a
    list (pandas reads an Arrow list as an array), a map value as a dict (pandas reads
    an Arrow map as ``[(key, count), ...]``).

    >>> plain_value(np.float64(2.5)), plain_value(np.nan), plain_value(pd.NA), plain_value("a")
    (2.5, None, None, 'a')
    >>> plain_value(np.array([1.0, 2.0])), plain_value([("a", 2), ("b", 1)])
    ([1.0, 2.0], {'a': 2, 'b': 1})
    """
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.ndarray):
        return [plain_value(v) for v in value.tolist()]
    if isinstance(value, list):
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
            return {k: plain_value(n) for k, n in value}
        return [plain_value(v) if isinstance(v, np.generic) else v for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
