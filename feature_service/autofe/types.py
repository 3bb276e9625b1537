"""What each column of a sample is, for feature generation and for the source schema.

Every column gets a *kind*, which decides the features it feeds, and a *wire type*,
the schema type the worker's strict parser must accept for the values as they arrive:

- `timestamp`: the event time (`--timestamp`): recency, and every window;
- `entity`: a join key (`--entity`): one feature view each;
- `numeric`: quantities, where a sum or a mean means something: sum, mean, min, max, std;
- `boolean`: true/false flags: count of true, share of true;
- `categorical`: labels with few enough values to count each: distinct count, and
  per-value counts of the most frequent values;
- `id`: labels with too many values for that (identifiers, codes): distinct count;
- `label`: the `--label` column: never a feature (it would leak the answer);
- `skip`: free text, other datetimes, clock times, a value per event, mixed types,
  one value on every event: nothing (reported, with the reason).

A kind gives the column its *role* (`ColumnProfile.role`, `aggregation.base.ROLES`),
which is what the aggregations declare they are proposed for (`Aggregation.proposals`):
numeric is `measure`, boolean `flag`, categorical `category`; an id (or another
entity's key) is an `identifier`, or `many_values` above `MANY_VALUES` (1000) distinct
values in the sample, where an entity's window can hold thousands of them: counted
approximately (`approx_count_distinct`, bounded state) rather than exactly
(`count_distinct`, which keeps each value).

A categorical or id column named like a device, an IP address, a card or a browser
fingerprint (`device_id`, `ip_address`, `card_hash`, ...) with more than
`MAX_CATEGORIES` values is also a *link* (`ColumnProfile.link`): one device used by
many customers is the classic fraud signal, so `generate` gives it a view of its own
counting the distinct entities seen with it (a device type with three values is not one).

The rules, in the order they apply, decided from what can be measured on the sample
(dtype, distinct values and their ratio to events, how the frequencies run over the
values, whether the column moves with the event time or with another number); a name
only breaks a tie the measurements leave open:

1. Strings: free text and datetimes hidden in strings are recognised by woodwork's
   inference (`NaturalLanguage`, `Datetime`) and skipped; a different value on every
   event is an event id (skipped); at most `MAX_CATEGORIES` (25) values is categorical;
   up to `MAX_MODERATE_CATEGORIES` (200) values, each seen on `MIN_EVENTS_PER_VALUE`
   (20) events on average, is still categorical (a destination airport among 96)
   unless named like an identifier (`merchant_id`: the tie-breaker); more is an id.
2. Numbers with fractions (`9.95`) are quantities: numeric.
3. Whole numbers (ints, or floats that are all whole) are where codes hide:
   - one value on every event: skipped (nothing to learn);
   - named like an identifier (`session_id`) and never negative: handled as a string
     (rule 1), so an id, or a categorical when it has few values;
   - a different value on every event, or rising with the event time (rank
     correlation above `SEQUENCE_CORRELATION`, 0.99, over more than 25 values): an
     event number or a counter: skipped;
   - negative values: a quantity (a delay, a balance): numeric;
   - clock times written as HHMM (`1545`: every value below 2400 with minutes below
     60, over more than 60 values): not a quantity (the mean of 0959 and 1001 is not
     10:00): skipped;
   - a part of a date (small values in the range of an hour, minute, day, month or
     weekday, named so): the windows already place events in time: skipped;
   - a code: more than `MAX_CATEGORIES` values, each repeated (at least
     `MIN_REPEATS` events per value on average), whose frequencies jump from one value
     to the next (correlation of the counts of adjacent values below
     `SMOOTH_CORRELATION`, 0.5: flight 1545 is busy, 1546 is not; a quantity's
     histogram is smooth) and that moves with no other number of the sample (|Pearson|
     below `COVARIES`, 0.5 with every other numeric column; a route's distance moves
     with its air time). Where the measurements cannot tell (too few values or
     repeats for a histogram) a name like a code (`zip`, `route_no`) makes it one;
     where they say code, a name like a quantity (`amount`, `distance`) keeps it
     numeric: the names only break ties. A code is categorical under the moderate
     limits of rule 1, else an id: never summed or averaged;
   - everything else is a quantity: numeric.

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
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_service.times import InvalidTime, datetime_seconds, micros_of_iso, seconds_of_micros

# A categorical column has at most this many distinct values on the sample; above, an id,
# unless it is a moderate one: at most MAX_MODERATE_CATEGORIES values, each on
# MIN_EVENTS_PER_VALUE events on average (rules 1 and 3 of the module docstring).
MAX_CATEGORIES = 25
MAX_MODERATE_CATEGORIES = 200
MIN_EVENTS_PER_VALUE = 20
# Whole numbers: a code repeats its values, its counts jump between adjacent values, and
# it moves with no other number; a column rising with the event time is a counter.
MIN_REPEATS = 5
SMOOTH_CORRELATION = 0.5
COVARIES = 0.5
SEQUENCE_CORRELATION = 0.99
# Per-value counts are made for the most frequent values of a categorical, at most this many.
MAX_INTERESTING_VALUES = 5
# An identifier with more distinct values than this in the sample has the role many_values.
MANY_VALUES = 1000
# A field missing from more events than this stays out of the schema (else they are refused).
MAX_ABSENT_SHARE = 0.01
# A column whose values are mostly of one type has that type; the rest are bad events.
DOMINANT_SHARE = 0.9
# Numbers this large are epoch milliseconds (or finer), not the seconds the worker reads.
_EPOCH_SECONDS_LIMIT = 1e11

_ID_NAME = re.compile(r"(^|_)(id|key|uuid|guid)$|[a-z](Id|ID)$", re.IGNORECASE)
# Tie-breakers for whole numbers, by the name's last word: a code, or a quantity.
_CODE_NAME = re.compile(
    r"(^|_)(no|nr|num|number|code|zip|zipcode|postcode|postal|fips|iata|icao)$", re.IGNORECASE
)
_QUANTITY_NAME = re.compile(
    r"(^|_)(amount|amt|price|cost|fee|total|sum|value|balance|qty|quantity|count|cnt|size"
    r"|weight|distance|dist|miles|km|length|duration|delay|age|score|rate|bytes|seconds"
    r"|secs|s|ms|minutes|mins|hours|days|n)$|^(n|num)_",
    re.IGNORECASE,
)
# Links between entities, by the name's words: a device, an IP address, a card, a
# fingerprint, an email or a phone number, with an optional id/hash suffix.
_LINK_NAME = re.compile(
    r"(^|_)(device|ip|ip_?addr(ess)?|ipv4|ipv6|fingerprint|card|email|phone)"
    r"(_(id|hash|key|no|number))?$",
    re.IGNORECASE,
)
# Parts of a date, named so, and the values each can take.
_DATE_PARTS = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day": (1, 31),
    "weekday": (0, 7),
    "dow": (0, 7),
    "week": (0, 53),
    "month": (1, 12),
    "quarter": (1, 4),
    "year": (1900, 2200),
}
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
    link: bool = False  # named like a device, IP or card, with many values: a view of its own

    @property
    def role(self) -> str | None:
        """What it is to the aggregations `generate` proposes (`aggregation.base.ROLES`);
        None: it feeds none (the time, the label, a skipped column)."""
        if self.kind in ("id", "entity"):
            return "many_values" if self.distinct > MANY_VALUES else "identifier"
        return _ROLES.get(self.kind)


_ROLES = {"numeric": "measure", "boolean": "flag", "categorical": "category"}


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
    def links(self) -> tuple[str, ...]:
        """The link columns (`ColumnProfile.link`) still in use: each keys a view of its own."""
        used = ("categorical", "id")
        return tuple(c.name for c in self.columns if c.link and c.kind in used)

    @property
    def keys(self) -> tuple[str, ...]:
        """The columns views are keyed by: the entities, then the links."""
        return (*self.entities, *self.links)

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
    label: str | None = None,
) -> SampleProfile:
    """Profile every column of `frame`; ValueError for a missing or unusable key column.

    `label` names the `--label` column: kind `label`, never a feature nor in the schema.

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
    if label is not None and label not in columns:
        raise ValueError(
            f"label column {label!r} is not in the sample (columns: {', '.join(columns)})"
        )
    if label is not None and label in (timestamp, *entities):
        raise ValueError(f"column {label!r} cannot be both the label and a key or the time")
    event_ts = event_times(frame[timestamp], timestamp)
    # the columns a whole-number column may move with (rule 3): not the keys nor the time
    measures = frame.drop(columns=[timestamp, *entities, *([label] if label else [])])
    profiles = []
    for name in columns:
        series = frame[name]
        if name == timestamp:
            profiles.append(
                ColumnProfile(name, "timestamp", "timestamp", series.nunique(), 0.0, "event time")
            )
        elif name in entities:
            profiles.append(_entity_profile(name, series))
        elif name == label:
            profiles.append(
                ColumnProfile(
                    name,
                    "label",
                    None,
                    int(series.nunique()),
                    float(series.isna().mean()),
                    "the label: ranks the features, never one itself",
                )
            )
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
            column = _profile(
                name, series, len(frame), max_categories, max_values, measures, event_ts
            )
            if (
                column.kind in ("categorical", "id")
                and column.distinct > max_categories
                and _LINK_NAME.search(name)
            ):
                column = replace(
                    column,
                    link=True,
                    reason=f"{column.reason}; links entities (named like a device, IP "
                    "address or card): a view of its own",
                )
            profiles.append(column)
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
    name: str,
    series: pd.Series,
    rows: int,
    max_categories: int,
    max_values: int,
    frame: pd.DataFrame,
    event_ts: npt.NDArray[np.float64],
) -> ColumnProfile:
    """One column's kind, by the rules of the module docstring."""
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
    if wire in ("int", "float"):
        numbers = values.astype(np.float64).to_numpy()
        kind, reason = _number_kind(name, numbers, distinct, looks_like_id, frame, event_ts)
        if stray:
            reason += f" ({stray} other values: those events are refused)"
        if kind != "code":  # a code or an identifier: read on as labels are
            return ColumnProfile(name, kind, wire, distinct, null_share, reason)
        code_reason: str | None = reason
    else:
        code_reason = None
    logical = _logical_type(values) if wire == "string" else "Categorical"
    if logical in _TEXT_TYPES:
        return ColumnProfile(name, "skip", wire, distinct, null_share, "free text")
    if logical in _DATETIME_TYPES:
        return ColumnProfile(name, "skip", wire, distinct, null_share, "another datetime")
    if distinct == len(values) and len(values) > max_categories:
        return ColumnProfile(
            name, "skip", wire, distinct, null_share, "a different value on every event"
        )
    moderate = (
        distinct <= MAX_MODERATE_CATEGORIES
        and len(values) >= MIN_EVENTS_PER_VALUE * distinct
        and not looks_like_id
    )
    if distinct <= max_categories or moderate:
        counts = values.value_counts()
        top = tuple(_plain(v) for v in counts.index[:max_values])
        reason = f"{distinct} distinct values"
        if distinct > max_categories:
            reason += f", each on {len(values) / distinct:.0f} events on average"
        return ColumnProfile(
            name,
            "categorical",
            wire,
            distinct,
            null_share,
            reason if code_reason is None else f"{code_reason}; {reason}",
            interesting_values=top,
        )
    if code_reason is not None:
        reason = code_reason
    else:
        reason = "named like an id" if looks_like_id else f"{distinct} distinct values"
    return ColumnProfile(name, "id", wire, distinct, null_share, reason)


def _number_kind(
    name: str,
    numbers: npt.NDArray[np.float64],
    distinct: int,
    looks_like_id: bool,
    frame: pd.DataFrame,
    event_ts: npt.NDArray[np.float64],
) -> tuple[str, str]:
    """(kind, reason) of a numeric column (rules 2 and 3 of the module docstring);
    kind "code" means a code or an identifier, to be read on as labels are."""
    if not np.all(np.mod(numbers, 1) == 0):
        return "numeric", "numbers"
    if distinct == 1:
        return "skip", f"one value ({_plain(numbers[0]):g}) on every event"
    negative = bool((numbers < 0).any())
    if looks_like_id and not negative:
        return "code", "whole numbers named like an id"
    if distinct == numbers.size and numbers.size > MAX_CATEGORIES:
        return "skip", "a different value on every event"
    rising = _time_correlation(name, frame, event_ts)
    if rising > SEQUENCE_CORRELATION and distinct > MAX_CATEGORIES:
        return "skip", f"rises with the event time (rank correlation {rising:.3f}): a counter"
    if negative:
        return "numeric", "whole numbers, some negative"
    if distinct > 60 and numbers.max() <= 2400 and bool(np.all(np.mod(numbers, 100) < 60)):
        return "skip", "a clock time written as HHMM, not a quantity"
    word = re.split(r"[^0-9a-z]+", name.lower())[-1]
    part = _DATE_PARTS.get(word)  # "hours" or "days" may well be durations
    if part is not None and part[0] <= numbers.min() and numbers.max() <= part[1]:
        return "skip", f"a part of a date ({word}): the windows already place events in time"
    if distinct <= MAX_CATEGORIES or numbers.size < MIN_REPEATS * distinct:
        # too few values, or too few repeats, to measure a histogram: the name decides
        if _CODE_NAME.search(name):
            return "code", "whole numbers named like a code"
        return "numeric", "whole numbers"
    smooth = _adjacent_correlation(numbers)
    if smooth >= SMOOTH_CORRELATION:
        return "numeric", f"whole numbers, smooth histogram (adjacent counts {smooth:.2f})"
    partner, corr = _covariate(name, numbers, frame)
    if partner is not None:
        return "numeric", f"whole numbers that move with {partner} (|corr| {corr:.2f})"
    if _QUANTITY_NAME.search(name):
        return "numeric", "whole numbers like a code, but named like a quantity"
    smooth = round(smooth, 2) + 0.0  # no "-0.00"
    reason = f"a code: counts jump between adjacent values ({smooth:.2f})"
    return "code", reason + ", moves with no other number"


def _adjacent_correlation(numbers: npt.NDArray[np.float64]) -> float:
    """Correlation of the event counts of adjacent values (v, v + 1) over the central
    98% of the values: near 1 for a quantity's smooth histogram, near 0 for codes.

    >>> rng = np.random.default_rng(0)
    >>> _adjacent_correlation(np.round(rng.normal(100, 15, 5000))) > 0.9
    True
    >>> _adjacent_correlation(rng.choice(np.arange(1, 3000, 7), 5000) * 1.0) < 0.1
    True
    """
    low, high = np.quantile(numbers, [0.01, 0.99])
    if high - low > 1_000_000:  # sparser than any histogram: no neighbours to compare
        return 0.0
    inside = numbers[(numbers >= low) & (numbers <= high)]
    counts = np.bincount((inside - low).astype(np.int64)).astype(np.float64)
    if counts.size < 3 or counts[:-1].std() == 0 or counts[1:].std() == 0:
        return 1.0 if counts.size < 3 else 0.0
    return float(np.corrcoef(counts[:-1], counts[1:])[0, 1])


def _covariate(
    name: str, numbers: npt.NDArray[np.float64], frame: pd.DataFrame
) -> tuple[str | None, float]:
    """The first other numeric column that moves with this one (|Pearson| >= COVARIES,
    over the events where both have a value), and the correlation."""
    column = pd.to_numeric(frame[name], errors="coerce")
    for other in frame.columns:
        if other == name or not pd.api.types.is_numeric_dtype(frame[other]):
            continue
        if pd.api.types.is_bool_dtype(frame[other]):
            continue
        corr = column.corr(frame[other].astype(np.float64))
        if math.isfinite(corr) and abs(corr) >= COVARIES:
            return str(other), abs(corr)
    return None, 0.0


def _time_correlation(name: str, frame: pd.DataFrame, event_ts: npt.NDArray[np.float64]) -> float:
    """Rank correlation of a column with the event time (NaN-free events only)."""
    column = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
    both = np.isfinite(column) & np.isfinite(event_ts)
    if both.sum() < 3:
        return 0.0
    a = pd.Series(column[both]).rank().to_numpy()
    b = pd.Series(event_ts[both]).rank().to_numpy()
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


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
