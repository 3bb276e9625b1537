"""Values as the aggregations see them: what is null, and numbers as float64.

Shared by the algebra (`aggregation.algebra`), the window evaluation over sorted events
(`aggregation.window_events`) and the tiles, so a null or a number means the same
everywhere.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd


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
    for values near the float64 limit). The tiles and the training sets both use it.

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
