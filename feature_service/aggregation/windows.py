"""Window arithmetic: the one place that turns times into window and hop boundaries.

A feature with window ``W`` and hop ``h`` evaluated at time ``t`` aggregates the events
with ``floor((t - W) / h) * h <= event_ts <= t``. Because ``W`` is a multiple of ``h``,
``floor((t - W) / h) * h == floor(t / h) * h - W``, so every boundary is an integer
multiple of a hop and can be computed exactly from ``floor(t / h)``. The floors here are
exact and O(1) for any finite float ``t``: ``floor(t)`` of a float is an exact integer,
and for a whole number of seconds ``h``, ``floor(t / h) == floor(t) // h``, so no float
quotient (which may round across an integer) is ever taken.

>>> default_hop(3600), default_hop(86400), default_hop(30 * 86400)
(60, 3600, 86400)
>>> window_start(1_700_000_070.5, 3600, 60)
1699996440.0
>>> hop_start(1_700_000_070.5, 60)
1700000040
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

HOUR_S = 3600
DAY_S = 86400

EARLIEST_TIME = -2_208_988_800.0  # 1900-01-01T00:00:00Z
LATEST_TIME = 7_258_118_400.0  # 2200-01-01T00:00:00Z, excluded
TIME_RANGE = "1900-01-01..2199-12-31"
"""The times the service holds, event times and query times alike: the offline log
partitions by date with pandas (nanoseconds, up to 2262), and a time outside these
years is a unit mistake (epoch milliseconds) or a poison value (1e308)."""


def in_time_range(t: float) -> bool:
    """Whether `t` (epoch seconds) lies in `TIME_RANGE`.

    >>> in_time_range(1_793_491_200.0), in_time_range(1_793_491_200_000.0)
    (True, False)
    """
    return EARLIEST_TIME <= t < LATEST_TIME


_INT64_SAFE = float(2**62)  # |floor(ts)| below this: the int64 hop start cannot overflow


def default_hop(window_s: int) -> int:
    """The hop of a window that does not set one (DESIGN.md).

    60 s up to 1 h, 300 s under 12 h, 3600 s under 12 days, one day beyond.

    >>> [default_hop(w) for w in (60, 3600, 3660, 43200, 86400 * 12)]
    [60, 60, 300, 3600, 86400]
    """
    if window_s <= HOUR_S:
        return 60
    if window_s < 12 * HOUR_S:
        return 300
    if window_s < 12 * DAY_S:
        return HOUR_S
    return DAY_S


def resolve_hop(window_s: int, hop_s: int | None) -> int:
    """`hop_s`, or the default hop of `window_s`; ValueError unless it divides the window.

    >>> resolve_hop(600, None)
    60
    >>> resolve_hop(90, 60)
    Traceback (most recent call last):
    ...
    ValueError: window 90 s is not a multiple of its hop 60 s
    """
    if not _positive_int(window_s):
        raise ValueError(f"window must be a positive whole number of seconds, not {window_s!r}")
    hop = default_hop(window_s) if hop_s is None else hop_s
    if not _positive_int(hop):
        raise ValueError(f"hop must be a positive whole number of seconds, not {hop!r}")
    if window_s % hop:
        raise ValueError(f"window {window_s} s is not a multiple of its hop {hop} s")
    return hop


def window_starts(t: npt.NDArray[np.float64], window_s: int, hop_s: int) -> npt.NDArray[np.float64]:
    """`window_start` of many times at once: ``floor(t / h) * h - W`` (exact).

    >>> window_starts(np.array([1_700_000_070.5]), 3600, 60).tolist()
    [1699996440.0]
    """
    return (hop_starts(t, hop_s) - window_s).astype(np.float64)


def hop_start(ts: float, hop_s: int) -> int:
    """Start of the hop ``[s, s + hop_s)`` holding `ts`: exactly ``floor(ts/h)*h``.

    >>> hop_start(119.999, 60), hop_start(120.0, 60), hop_start(-0.5, 60)
    (60, 120, -60)
    """
    if not math.isfinite(ts):
        raise ValueError(f"timestamp must be finite, not {ts!r}")
    # integer arithmetic: exact for every finite float, 1e308 included, in constant time
    return (math.floor(ts) // int(hop_s)) * int(hop_s)


def hop_starts(ts: npt.ArrayLike, hop_s: int) -> npt.NDArray[np.int64]:
    """Vectorised `hop_start` for an array of float timestamps (exact, int64 result).

    ValueError for a timestamp that is not finite or whose hop start does not fit an int64.

    >>> hop_starts([0.0, 59.9, 60.0, -1.0], 60).tolist()
    [0, 0, 60, -60]
    """
    arr = np.asarray(ts, dtype=np.float64)
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError("timestamps must be finite")
    whole = np.floor(arr)  # an exact float integer
    if arr.size and not np.all(np.abs(whole) < _INT64_SAFE):
        raise ValueError(f"timestamps must lie within +-{_INT64_SAFE:.0f} s")
    return (whole.astype(np.int64) // hop_s) * hop_s


def window_start(t: float, window_s: int, hop_s: int) -> float:
    """First timestamp inside the window at `t`: ``floor((t - W) / h) * h`` (inclusive).

    >>> window_start(7200.0, 3600, 60), window_start(7259.9, 3600, 60)
    (3600.0, 3600.0)
    """
    return float(window_start_int(t, window_s, hop_s))


def window_start_int(t: float, window_s: int, hop_s: int) -> int:
    """`window_start` as an exact integer (it always is one)."""
    if window_s % hop_s:
        raise ValueError(f"window {window_s} s is not a multiple of its hop {hop_s} s")
    return hop_start(t, hop_s) - window_s


def in_window(ts: float, t: float, window_s: int | None, hop_s: int | None) -> bool:
    """Whether an event at `ts` is aggregated by a feature evaluated at `t`.

    >>> in_window(3600.0, 7259.0, 3600, 60), in_window(3599.9, 7259.0, 3600, 60)
    (True, False)
    >>> in_window(5.0, 10.0, None, None), in_window(10.5, 10.0, None, None)
    (True, False)
    """
    if ts > t:
        return False
    if window_s is None:
        return True
    return ts >= window_start_int(t, window_s, hop_s or default_hop(window_s))


def check_levels(levels: Iterable[int]) -> tuple[int, ...]:
    """Sorted distinct hop sizes; ValueError unless each divides the next larger one.

    >>> check_levels([3600, 60, 300, 60])
    (60, 300, 3600)
    >>> check_levels([60, 90])
    Traceback (most recent call last):
    ...
    ValueError: hops must each divide the next larger one: 60 does not divide 90
    """
    ordered = tuple(sorted(set(levels)))
    for level in ordered:
        if not _positive_int(level):
            raise ValueError(f"hop must be a positive whole number of seconds, not {level!r}")
    for small, large in itertools.pairwise(ordered):
        if large % small:
            raise ValueError(
                f"hops must each divide the next larger one: {small} does not divide {large}"
            )
    return ordered


def _positive_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and bool(value > 0)
