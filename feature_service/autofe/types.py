"""What each column of a sample is, for feature generation and for the source schema.

Every column gets a *kind*, which decides the features it feeds, and a *wire type*,
the schema type the worker's strict parser must accept for the values as they arrive:

- `timestamp`: the event time (`--timestamp`): recency, and every window;
- `entity`: a join key (`--entity`): one feature view each;
- `numeric`: int or float measurements: sum, mean, min, max, std;
- `boolean`: true/false flags: count of true, share of true;
- `categorical`: at most 25 distinct values on the sample: distinct count, per-value counts;
- `id`: more distinct values, or a name like `*_id`: distinct count;
- `skip`: free text, other datetimes, a value per event, mixed types: nothing (reported).

Free text and datetimes hidden in strings are recognised by woodwork's inference
(`NaturalLanguage`, `Datetime`); two rules it cannot know come first: a numeric column
named like an identifier (`session_id`) is an id, not a measurement, and a column with
a different value on every event is an event id, useless to aggregate.

>>> frame = pd.DataFrame({"user_id": ["u1", "u2", "u1"], "ts": [1.0, 2.0, 3.0],
...                       "price": [9.5, 3.0, 4.0], "page": ["home", "cart", "home"]})
>>> profile = profile_columns(frame, entities=["user_id"], timestamp="ts")
>>> [(c.name, c.kind, c.wire_type) for c in profile.columns]  # doctest: +NORMALIZE_WHITESPACE
[('user_id', 'entity', 'string'), ('ts', 'timestamp', 'timestamp'),
 ('price', 'numeric', 'float'), ('page', 'categorical', 'string')]
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_service.times import InvalidTime, datetime_seconds, micros_of_iso, seconds_of_micros

# A categorical column has at most this many distinct values on the sample; above, an id.
MAX_CATEGORIES = 25
# Per-value counts are made for the most frequent values of a categorical, at most this many.
MAX_INTERESTING_VALUES = 5
# A field missing from more events than this stays out of the schema (else they are refused).
MAX_ABSENT_SHARE = 0.01
# A column whose values are mostly of one type has that type; the rest are bad events.
DOMINANT_SHARE = 0.9
# Numbers this large are epoch milliseconds (or finer), not the seconds the worker reads.
_EPOCH_SECONDS_LIMIT = 1e11

_ID_NAME = re.compile(r"(^|_)(id|key|uuid|guid)$|[a-z](Id|ID)$", re.IGNORECASE)
_TEXT_TYPES = {"NaturalLanguage"}
_DATETIME_TYPES = {"Datetime"}
_INFER_ROWS = 500


@dataclass(frozen=True)
class ColumnProfile:
    """One column: its kind, schema type, distinct values, and why it was judged so."""

    name: str
    kind: str
    wire_type: str | None  # the source schema type; None for skipped columns
    distinct: int
    null_share: float
    reason: str
    interesting_values: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SampleProfile:
    """All columns, in sample order, plus the parsed event times (epoch seconds)."""

    columns: list[ColumnProfile]
    event_ts: npt.NDArray[np.float64] = field(repr=False)
    timestamp: str = ""
    entities: tuple[str, ...] = ()
    absent: Mapping[str, npt.NDArray[np.bool_]] = field(default_factory=dict, repr=False)

    def column(self, name: str) -> ColumnProfile:
        return next(c for c in self.columns if c.name == name)

    def of_kind(self, *kinds: str) -> list[ColumnProfile]:
        return [c for c in self.columns if c.kind in kinds]

    @property
    def schema(self) -> dict[str, str]:
        """The source schema: the columns features use, with their wire types.

        Skipped columns stay out, so an event is never refused for a field no feature reads.
        """
        used = (c for c in self.columns if c.kind != "skip")
        return {c.name: c.wire_type for c in used if c.wire_type is not None}


def profile_columns(
    frame: pd.DataFrame,
    entities: Sequence[str],
    timestamp: str | None,
    max_categories: int = MAX_CATEGORIES,
    max_values: int = MAX_INTERESTING_VALUES,
    absent: Mapping[str, npt.NDArray[np.bool_]] | None = None,
) -> SampleProfile:
    """Profile every column of `frame`; ValueError for a missing or unusable key column.

    `timestamp` None picks the one datetime-like column if there is exactly one.
    `absent` marks the records without a field (`Sample.absent`): a column missing from
    more than `MAX_ABSENT_SHARE` of them stays out of the schema, since the worker
    refuses an event that lacks a schema field.
    """
    absent = absent or {}
    if frame.empty:
        raise ValueError("the sample is empty")
    columns = [str(c) for c in frame.columns]
    if not entities:
        raise ValueError("give at least one --entity column")
    for entity in entities:
        if entity not in columns:
            raise ValueError(
                f"entity column {entity!r} is not in the sample (columns: {', '.join(columns)})"
            )
    if timestamp is None:
        timestamp = _guess_timestamp(frame, set(entities))
    elif timestamp not in columns:
        raise ValueError(
            f"timestamp column {timestamp!r} is not in the sample (columns: {', '.join(columns)})"
        )
    if timestamp in entities:
        raise ValueError(f"column {timestamp!r} cannot be both the timestamp and an entity")
    event_ts = event_times(frame[timestamp], timestamp)
    profiles = []
    for name in columns:
        series = frame[name]
        if name == timestamp:
            profiles.append(
                ColumnProfile(name, "timestamp", "timestamp", series.nunique(), 0.0, "event time")
            )
        elif name in entities:
            profiles.append(_entity_profile(name, series))
        elif name in absent and absent[name].mean() > MAX_ABSENT_SHARE:
            share = float(absent[name].mean())
            profiles.append(
                ColumnProfile(
                    name,
                    "skip",
                    None,
                    int(series.nunique()),
                    float(series.isna().mean()),
                    f"missing from {share:.0%} of the events (the worker refuses an event "
                    "without a schema field)",
                )
            )
        else:
            profiles.append(_profile(name, series, len(frame), max_categories, max_values))
    return SampleProfile(profiles, event_ts, timestamp, tuple(entities), absent)


def event_times(series: pd.Series, name: str = "timestamp") -> npt.NDArray[np.float64]:
    """Epoch seconds of a timestamp column (numbers, ISO-8601 strings or datetimes).

    Naive datetimes are UTC, as the worker reads them. A value that is empty or not a
    time is NaN (the worker refuses that event); ValueError names the column when most
    values are, or when numbers look like milliseconds.
    """
    if pd.api.types.is_bool_dtype(series):
        raise ValueError(f"timestamp column {name!r} holds booleans, not times")
    present = series.notna().to_numpy()
    if pd.api.types.is_numeric_dtype(series):
        seconds = series.to_numpy(dtype=np.float64, na_value=np.nan)
        seconds[~np.isfinite(seconds)] = np.nan
        if present.any() and np.nanmedian(np.abs(seconds)) > _EPOCH_SECONDS_LIMIT:
            raise ValueError(
                f"timestamp column {name!r} looks like epoch milliseconds; "
                "the service reads epoch seconds (divide by 1000)"
            )
    elif pd.api.types.is_datetime64_any_dtype(series):
        seconds = datetime_seconds(series)
    else:
        seconds = np.full(len(series), np.nan)
        text = np.fromiter((isinstance(v, str) for v in series), dtype=bool, count=len(series))
        if text.any():  # read as the worker reads them (`times`), each distinct one once
            strings = series[text]
            parsed = {v: _iso_seconds(v) for v in pd.unique(strings)}
            seconds[text] = strings.map(parsed).to_numpy(dtype=np.float64)
        numbers = np.fromiter(
            (isinstance(v, (int, float)) and not isinstance(v, bool) for v in series),
            dtype=bool,
            count=len(series),
        )
        seconds[numbers] = series[numbers].astype(float).to_numpy()
    usable = np.isfinite(seconds)
    if usable.sum() < DOMINANT_SHARE * len(series) or not usable.any():
        bad = series[~usable & present]
        if bad.empty:
            raise ValueError(f"timestamp column {name!r} is empty on most events")
        raise ValueError(
            f"timestamp column {name!r} is not epoch seconds or ISO-8601 (e.g. {bad.iloc[0]!r})"
        )
    return seconds


def _iso_seconds(text: str) -> float:
    """Epoch seconds of an ISO-8601 string as the worker reads it; NaN if it is not one."""
    try:
        return seconds_of_micros(micros_of_iso(text))
    except InvalidTime:
        return math.nan


def _guess_timestamp(frame: pd.DataFrame, entities: set[str]) -> str:
    found = []
    for name in frame.columns:
        if name in entities:
            continue
        series = frame[name].dropna()
        if pd.api.types.is_datetime64_any_dtype(series) or (
            not series.empty and _logical_type(series) in _DATETIME_TYPES
        ):
            found.append(str(name))
    if len(found) == 1:
        return found[0]
    if not found:
        raise ValueError("no timestamp column found in the sample; name it with --timestamp COL")
    raise ValueError(
        f"several columns look like times ({', '.join(found)}); pick one with --timestamp COL"
    )


def _entity_profile(name: str, series: pd.Series) -> ColumnProfile:
    values = series.dropna()
    if values.empty:
        raise ValueError(f"entity column {name!r} is empty on every event of the sample")
    wire, stray = _dominant_type(values)
    if wire is not None and stray:
        values = values[[accepts(v, wire) for v in values]]
    if wire == "float" and bool((values.astype(float) % 1 == 0).all()):
        wire = "int"  # integer ids with a null somewhere: pandas made them floats
    if wire not in ("string", "int"):
        raise ValueError(
            f"entity column {name!r} must hold strings or integers, not {wire or 'mixed types'}"
        )
    null_share = float(series.isna().mean())
    return ColumnProfile(name, "entity", wire, values.nunique(), null_share, "join key")


def _profile(
    name: str, series: pd.Series, rows: int, max_categories: int, max_values: int
) -> ColumnProfile:
    values = series.dropna()
    null_share = float(series.isna().mean()) if rows else 0.0
    if values.empty:
        return ColumnProfile(name, "skip", None, 0, null_share, "empty on every event")
    distinct = int(values.astype(str).nunique()) if values.dtype == object else values.nunique()
    wire, stray = _dominant_type(values)
    if wire is not None and stray:
        values = values[[accepts(v, wire) for v in values]]
        null_share = 1.0 - len(values) / rows
    if wire is None:
        kinds = sorted({type(v).__name__ for v in values})
        return ColumnProfile(
            name, "skip", None, distinct, null_share, f"mixed types ({', '.join(kinds)})"
        )
    if wire == "other":
        return ColumnProfile(
            name, "skip", None, distinct, null_share, "nested values (lists or objects)"
        )
    if wire == "timestamp":
        return ColumnProfile(name, "skip", None, distinct, null_share, "another datetime")
    if wire == "bool":
        return ColumnProfile(name, "boolean", "bool", distinct, null_share, "true/false")
    looks_like_id = bool(_ID_NAME.search(name))
    if wire in ("int", "float") and not looks_like_id:
        note = f" ({stray} other values: those events are refused)" if stray else ""
        return ColumnProfile(name, "numeric", wire, distinct, null_share, "numbers" + note)
    logical = _logical_type(values) if wire == "string" else "Categorical"
    if logical in _TEXT_TYPES:
        return ColumnProfile(name, "skip", wire, distinct, null_share, "free text")
    if logical in _DATETIME_TYPES:
        return ColumnProfile(name, "skip", wire, distinct, null_share, "another datetime")
    if distinct == len(values) and len(values) > max_categories:
        return ColumnProfile(
            name, "skip", wire, distinct, null_share, "a different value on every event"
        )
    if distinct <= max_categories:
        counts = values.value_counts()
        top = tuple(_plain(v) for v in counts.index[:max_values])
        return ColumnProfile(
            name,
            "categorical",
            wire,
            distinct,
            null_share,
            f"{distinct} distinct values",
            interesting_values=top,
        )
    reason = "named like an id" if looks_like_id else f"{distinct} distinct values"
    return ColumnProfile(name, "id", wire, distinct, null_share, reason)


def _dominant_type(values: pd.Series) -> tuple[str | None, int]:
    """The schema type of most (non-null) values, and how many values do not have it.

    None when no type covers `DOMINANT_SHARE` of the values.
    """
    if pd.api.types.is_bool_dtype(values):
        return "bool", 0
    if pd.api.types.is_datetime64_any_dtype(values):
        return "timestamp", 0
    if isinstance(values.dtype, pd.CategoricalDtype):
        return _dominant_type(pd.Series(np.asarray(values.astype(object)), dtype=object))
    if pd.api.types.is_integer_dtype(values):
        return "int", 0
    if pd.api.types.is_float_dtype(values):
        return "float", 0
    groups: dict[str, int] = {}
    has_float = False
    for value in values:
        group = _value_group(value)
        has_float = has_float or group == "float"
        group = "number" if group in ("int", "float") else group
        groups[group] = groups.get(group, 0) + 1
    group, count = max(groups.items(), key=lambda item: item[1])
    if count < DOMINANT_SHARE * len(values):
        return None, len(values) - count
    if group == "number":
        group = "float" if has_float else "int"
    return group, len(values) - count


def _value_group(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return "timestamp"
    return "other"


def accepts(value: Any, wire_type: str) -> bool:
    """Whether the worker's parser takes this non-null value for a column of `wire_type`."""
    group = _value_group(value)
    if wire_type == "float":
        return group in ("int", "float")
    if wire_type == "timestamp":
        return group in ("int", "float", "string", "timestamp")
    return group == wire_type


def accepted_events(frame: pd.DataFrame, profile: SampleProfile) -> npt.NDArray[np.bool_]:
    """Which rows the worker would accept: every schema field present and typed, no null
    entity or time.

    The others would be dead-lettered, so they are left out of what the sample measures.
    (Every entity must be present here, not only the topic's key: a view skips nothing,
    so an event without one of its entities would not count for that entity anyway.)
    """
    ok = np.isfinite(profile.event_ts)
    for column in profile.columns:
        if column.wire_type is None or column.kind == "skip":
            continue
        if column.name in profile.absent:
            ok &= ~profile.absent[column.name]
        if column.kind == "timestamp":
            continue
        series = frame[column.name]
        nulls = series.isna().to_numpy()
        if column.kind == "entity":
            ok &= ~nulls
        if series.dtype == object:
            typed = np.fromiter(
                (n or accepts(v, column.wire_type) for v, n in zip(series, nulls, strict=True)),
                dtype=bool,
                count=len(series),
            )
            ok &= typed
    return ok


def _logical_type(values: pd.Series) -> str:
    import woodwork as ww

    # woodwork tries every type it knows (and dateutil): a sample of the values is enough
    if len(values) > _INFER_ROWS:
        values = values.sample(n=_INFER_ROWS, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return type(ww.type_system.infer_logical_type(values.reset_index(drop=True))).__name__


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
