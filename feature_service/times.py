"""Times, one owner: every layer turns a time into epoch seconds here, exact to the µs.

The service holds a time as float64 epoch seconds. A time given another way (an
ISO-8601 string, a datetime, a datetime64 column, an integer) is first made an integer
number of microseconds, exactly, and then divided once: ``us / 1e6``. Both operands
are exact in float64 (``|us| < 2**53`` in the years the service holds,
`aggregation.windows.TIME_RANGE`) and IEEE division is correctly rounded, so the result
is the float nearest to the true time: the same float whichever path a time takes, and
the same as Python's ``datetime.timestamp()``. Converting nanoseconds to float before
dividing (``datetime64[ns].astype(int64) / 1e9``) rounds twice and lands a quarter of
millisecond times one float step off, which moves a training-set row at an event's own
time to just before that event.

Finer than a microsecond is cut off towards the past (floor), as Python's
``datetime.fromisoformat`` cuts off a ninth fractional digit; in the years held, one
float step of epoch seconds is under a microsecond, so no two microseconds share a float,
and the way back is exact too: `micros_of_seconds` here, or ``datetime.fromtimestamp(s,
UTC)``, which rounds to the nearest microsecond (how the API prints event times).

Who calls what:

- events (`events.parsing.parse_timestamp`), `as_of` (`requests.query_time`) and the
  rows of the HTTP training-set route: `parse_time`, one value;
- training-set entity rows (`offline.historical`): `time_column`;
- datetime columns pushed by the SDK and sampled by `generate`: `datetime_seconds`;
- featuretools' time index in `generate` (`autofe.dfs`): `datetimes_of_seconds`.

>>> parse_time("2026-11-03T06:58:25.765Z")
1793689105.765
>>> time_column(pd.Series(pd.to_datetime(["2026-11-03T06:58:25.765Z"])), "t").tolist()
[1793689105.765]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_service.aggregation.windows import (
    EARLIEST_TIME,
    LATEST_TIME,
    TIME_RANGE,
    in_time_range,
)

Float = npt.NDArray[np.float64]
Int = npt.NDArray[np.int64]

MICROS_PER_SECOND = 1_000_000
EARLIEST_MICROS = int(EARLIEST_TIME) * MICROS_PER_SECOND
LATEST_MICROS = int(LATEST_TIME) * MICROS_PER_SECOND  # excluded

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICRO = timedelta(microseconds=1)
_NAT = np.iinfo(np.int64).min
_FINER_THAN_MICROS = ("ns", "ps", "fs", "as")


class InvalidTime(ValueError):
    """A value that is not a time the service can hold; the message names it and why."""


def seconds_of_micros(us: int) -> float:
    """Epoch seconds of integer microseconds: one correctly rounded division.

    >>> seconds_of_micros(1_793_689_105_765_000)
    1793689105.765
    """
    return us / MICROS_PER_SECOND


def micros_of_datetime(value: datetime) -> int:
    """Exact microseconds since the epoch of a datetime; naive means UTC.

    A `pandas.Timestamp` keeps nanoseconds, which are cut off (floor), as everywhere.

    >>> micros_of_datetime(datetime(2026, 11, 3, 6, 58, 25, 765000))
    1793689105765000
    """
    if isinstance(value, pd.Timestamp):
        return int(_datetime64_micros(np.asarray([_naive_utc(value)]))[0])
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _ONE_MICRO


def micros_of_iso(text: str) -> int:
    """Exact microseconds of an ISO-8601 string (naive means UTC), as Python reads it.

    >>> micros_of_iso("2026-11-03T06:58:25.765+00:00")
    1793689105765000
    """
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidTime(f"timestamp {_shown(text)} is not epoch seconds or ISO-8601") from None
    return micros_of_datetime(parsed)


def parse_time(value: Any) -> float:
    """Epoch seconds of one time: a JSON number (epoch seconds), an ISO-8601 string, a
    datetime or a `numpy.datetime64`; naive means UTC. `InvalidTime` names what is wrong:
    not a time, not finite, or outside the years events may have (`TIME_RANGE`, with a
    hint when a number looks like epoch milliseconds). Huge integers are refused, never
    an OverflowError.

    >>> parse_time("2026-11-01T00:00:00Z"), parse_time(5), parse_time(1.5)
    (1793491200.0, 5.0, 1.5)
    """
    if value is pd.NaT or value is None:
        raise InvalidTime("timestamp is missing (null or NaT)")
    if isinstance(value, bool | np.bool_):
        raise InvalidTime("a timestamp must be epoch seconds or ISO-8601, got a boolean")
    if isinstance(value, int | np.integer):
        number = int(value)  # compared as an integer: no float of a 400-digit number
        if not EARLIEST_TIME <= number < LATEST_TIME:
            raise _outside(value, number)
        return float(number)
    if isinstance(value, float | np.floating):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise InvalidTime(f"timestamp {value!r} is not finite")
        if not in_time_range(seconds):
            raise _outside(value, seconds)
        return seconds
    if isinstance(value, str):
        us = micros_of_iso(value)
    elif isinstance(value, datetime):
        us = micros_of_datetime(value)
    elif isinstance(value, np.datetime64):
        if np.isnat(value):
            raise InvalidTime("timestamp is NaT (not a time)")
        us = _checked_datetime64_micros(np.asarray([value]), "timestamp")[0]
    else:
        raise InvalidTime(f"a timestamp must be epoch seconds or ISO-8601, got {_shown(value)}")
    if not EARLIEST_MICROS <= us < LATEST_MICROS:
        raise _outside(value, None)
    return seconds_of_micros(int(us))


def check_in_range(t: float | int, what: str) -> None:
    """`InvalidTime` naming `what` unless the epoch seconds `t` lie in `TIME_RANGE`
    (compared exactly, also for an integer too large for a float).

    >>> check_in_range(1e308, "as_of")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    feature_service.times.InvalidTime: as_of 1e+308 is outside 1900-01-01..2199-12-31 ...
    """
    if not EARLIEST_TIME <= t < LATEST_TIME:  # NaN fails too
        raise InvalidTime(
            f"{what} {_shown(t)} is outside {TIME_RANGE} "
            f"(epoch seconds {EARLIEST_TIME:.0f} to {LATEST_TIME - 1:.0f})"
        )


def time_column(column: pd.Series | Sequence[Any], what: str) -> Float:
    """Epoch seconds of a column of times: datetimes (naive = UTC, any zone, any
    resolution), epoch seconds, ISO-8601 strings, or a mix of them as objects. Every
    value must be a time in `TIME_RANGE`; `InvalidTime` names `what` and the problem.

    Each value gets exactly the float `parse_time` gives it alone.

    >>> time_column(pd.Series(["2026-11-01T00:00:00Z", "2026-11-01 00:00:01"]), "t").tolist()
    [1793491200.0, 1793491201.0]
    """
    series = column if isinstance(column, pd.Series) else pd.Series(list(column), dtype=object)
    missing = int(series.isna().sum())
    if missing:
        raise InvalidTime(f"{what} has {missing} missing values")
    if pd.api.types.is_bool_dtype(series):
        raise InvalidTime(f"{what} must be datetimes, epoch seconds or ISO-8601")
    if pd.api.types.is_numeric_dtype(series):
        out = series.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(out)):
            raise InvalidTime(f"{what} has values that are not finite")
        if out.size:
            check_in_range(float(out.min()), what)
            check_in_range(float(out.max()), what)
        return out
    if pd.api.types.is_datetime64_any_dtype(series):
        us = _checked_datetime64_micros(_naive_utc_values(series), what)
        return us.astype(np.float64) / MICROS_PER_SECOND
    values = series.to_numpy(dtype=object)
    out = np.empty(len(values), dtype=np.float64)
    seen: dict[tuple[type, Any], float] = {}  # a time repeated on many rows is parsed once
    for i, value in enumerate(values.tolist()):
        try:
            key = (type(value), value)
            seconds = seen.get(key)
            if seconds is None:
                seconds = seen[key] = parse_time(value)
        except TypeError:  # unhashable (a list): parse_time refuses it
            seconds = _parsed(value, what, i)
        except InvalidTime as exc:
            raise InvalidTime(f"{what}[{i}]: {exc}") from None
        out[i] = seconds
    return out


def datetime_seconds(column: pd.Series | npt.NDArray[Any]) -> Float:
    """Epoch seconds of a datetime column (naive = UTC), NaN for NaT; no range check
    (what reads the seconds decides): exact to the microsecond.

    >>> datetime_seconds(pd.Series(pd.to_datetime(["2026-11-03T06:58:25.765Z", None]))).tolist()
    [1793689105.765, nan]
    """
    values = _naive_utc_values(column) if isinstance(column, pd.Series) else np.asarray(column)
    us = _datetime64_micros(values)
    out = us.astype(np.float64) / MICROS_PER_SECOND
    out[np.isnat(values)] = np.nan
    return out


def micros_of_seconds(seconds: npt.ArrayLike) -> Int:
    """The integer microseconds whose time `seconds` are (the inverse of
    ``us / 1e6``), the nearest microsecond for a time between two; NaN is refused.

    ``round(s * 1e6)`` alone can be one off near 2200, where ``s * 1e6`` rounds by
    more than half a microsecond; the neighbour that divides back to `s` is taken.

    >>> micros_of_seconds([1793689105.765, 0.000001]).tolist()
    [1793689105765000, 1]
    """
    s = np.asarray(seconds, dtype=np.float64)
    if np.isnan(s).any():
        raise InvalidTime("a time is NaN")
    guess = np.round(s * MICROS_PER_SECOND).astype(np.int64)
    for step in (-1, 1):
        near = guess + step
        better = (near.astype(np.float64) / MICROS_PER_SECOND == s) & (
            guess.astype(np.float64) / MICROS_PER_SECOND != s
        )
        guess = np.where(better, near, guess)
    return guess


def datetimes_of_seconds(seconds: npt.ArrayLike) -> npt.NDArray[np.datetime64]:
    """Naive UTC ``datetime64[us]`` of epoch seconds, exact (`micros_of_seconds`).

    >>> str(datetimes_of_seconds([1793689105.765])[0])
    '2026-11-03T06:58:25.765000'
    """
    return micros_of_seconds(seconds).view("datetime64[us]")


# --------------------------------------------------------------------------- inside


def _outside(raw: Any, seconds: float | int | None) -> InvalidTime:
    hint = ""
    if seconds is not None and abs(seconds) < 1e300 and in_time_range(seconds / 1000):
        hint = " (epoch milliseconds? times are epoch seconds)"
    return InvalidTime(f"timestamp {_shown(raw)} is outside {TIME_RANGE}{hint}")


def _parsed(value: Any, what: str, i: int) -> float:
    try:
        return parse_time(value)
    except InvalidTime as exc:
        raise InvalidTime(f"{what}[{i}]: {exc}") from None


def _shown(value: Any) -> str:
    """`repr` of a value for one line of an error: long ones (a 400-digit integer) cut."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**40 else None
    if text is None:
        digits = str(value)
        return f"{digits[:20]}...({len(digits.lstrip('-'))} digits)"
    return text if len(text) <= 80 else f"{text[:77]}..."


def _naive_utc(value: pd.Timestamp) -> np.datetime64:
    if value.tzinfo is not None:
        value = value.tz_convert("UTC").tz_localize(None)
    return value.to_datetime64()


def _naive_utc_values(series: pd.Series) -> npt.NDArray[Any]:
    """The datetime64 values of a datetime Series, in UTC, without a zone."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    return series.to_numpy()


def _datetime64_micros(values: npt.NDArray[Any]) -> Int:
    """Integer microseconds of datetime64 values (floor below a µs; NaT stays NaT's int).

    numpy's cast between datetime units floors (-1500 ns is -2 µs), as `fromisoformat`
    cuts a fraction off; a unit coarser than a µs is multiplied, exactly."""
    unit, _ = np.datetime_data(values.dtype)
    if unit in _FINER_THAN_MICROS[1:] or unit == "generic":
        raise InvalidTime(f"datetimes in unit {unit!r} are not supported; use ns, us, ms or s")
    return values.astype("datetime64[us]").view(np.int64)


def _checked_datetime64_micros(values: npt.NDArray[Any], what: str) -> Int:
    """`_datetime64_micros`, refusing NaT and times outside `TIME_RANGE` (checked in the
    values' own unit first, so no year-3000 second overflows on the way to µs)."""
    if np.isnat(values).any():
        raise InvalidTime(f"{what} has {int(np.isnat(values).sum())} missing values")
    low = np.datetime64("1900-01-01").astype(values.dtype)
    high = np.datetime64("2200-01-01").astype(values.dtype)
    outside = (values < low) | (values >= high)
    if outside.any():
        shown = np.datetime_as_string(values[outside][0])
        raise InvalidTime(f"{what} {shown} is outside {TIME_RANGE}")
    return _datetime64_micros(values)
