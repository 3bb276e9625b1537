"""Candidate features from featuretools' Deep Feature Synthesis, mapped onto ours.

The sample becomes an EntitySet with the events as the child dataframe and one parent
per entity column (`normalize_dataframe`). For each entity, `ft.dfs(features_only=True)`
lists the aggregation features featuretools would build from the column types, with the
categoricals' frequent values as `where` filters ("interesting values"). Each one
maps onto one of our aggregations:

| featuretools       | ours                                   | group       |
|--------------------|----------------------------------------|-------------|
| `TimeSinceLast`    | `time_since_last` (lifetime)           | recency     |
| `Count`            | `count` per window                     | frequency   |
| `Sum`, `Mean`, `Min`, `Max`, `Std` | the same, per window   | monetary    |
| `NumUnique`        | `count_distinct` per window            | breadth     |
| `NumTrue`          | `count` where `flag == True`           | flags       |
| `PercentTrue`      | `mean` of the flag (bool counts 0/1)   | flags       |
| `Count` where `c = v` | `count` where `c == v`              | per-value   |

DFS has no windows: each candidate is repeated per window, and its featuretools twin
gets `use_previous=<window>`, which keeps events with `t - W <= ts <= t`: exactly our
window when `t` is on a hop boundary. Every `Candidate` keeps that twin, so
`feature_matrix` gives featuretools' own values for the features we generate (used to
prune on the sample, and by the tests as an independent oracle).

Where featuretools and we differ by convention: a `sum` over an empty window is 0 in
featuretools and null here (DESIGN.md: only counts are 0 when empty).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from feature_service.aggregation.registry import featuretools_twin
from feature_service.autofe.types import SampleProfile, accepted_events
from feature_service.durations import format_duration
from feature_service.times import datetimes_of_seconds

EVENTS = "events"
_EVENT_ID = "_event_id"

# featuretools primitive -> group; each is computed by the aggregation that declares it
# (`Aggregation.featuretools`), the flags' by the one declaring `_FLAG_AS[primitive]`
# (`num_true`: a count with `where: flag == True`; `percent_true`: the mean of the flag).
PRIMITIVE_GROUPS: dict[str, str] = {
    "time_since_last": "recency",
    "count": "frequency",
    "sum": "monetary",
    "mean": "monetary",
    "min": "monetary",
    "max": "monetary",
    "std": "monetary",
    "num_unique": "breadth",
    "num_true": "flags",
    "percent_true": "flags",
}
_FLAG_AS = {"num_true": "count", "percent_true": "mean"}


def ours(primitive: str) -> str:
    """The name of our aggregation computing featuretools' `primitive`.

    >>> ours("num_unique"), ours("percent_true")
    ('count_distinct', 'mean')
    """
    twin = featuretools_twin(_FLAG_AS.get(primitive, primitive))
    assert twin is not None, primitive
    return twin.name


GROUPS = ("recency", "frequency", "monetary", "breadth", "flags", "per-value")
GROUP_TITLES = {
    "recency": "Recency",
    "frequency": "Frequency: events per window",
    "monetary": "Amounts: sum, mean, min, max, std per window",
    "breadth": "Breadth: distinct values per window",
    "flags": "Flags: how often a true/false column is true",
    "per-value": "Per-value counts (DFS interesting values)",
}
_MONETARY_ORDER = ("sum", "mean", "max", "min", "std")
_TIERS = {
    "time_since_last": 0,
    "count": 0,
    "sum": 0,
    "mean": 0,
    "max": 1,
    "num_unique": 1,
    "num_true": 1,
    "min": 2,
    "std": 2,
    "percent_true": 2,
}


@dataclass(frozen=True)
class Candidate:
    """One proposed feature of one entity's view, with its featuretools twin."""

    name: str
    entity_column: str
    aggregation: str
    column: str | None
    window_s: int | None
    where: str | None
    group: str
    description: str
    ft_feature: Any = field(repr=False, compare=False)
    tier: int = 0

    @property
    def rank(self) -> tuple[int, int, int, int]:
        """Priority (pruning order, --max-features): tier, group, shorter window, aggregation.

        Tier 0 is the core of RFM (recency, counts, sums and means); tier 1 adds maxima,
        distinct counts, flag counts and the two most frequent values of a categorical;
        tier 2 the rest (minima, std, shares, rarer values).
        """
        return self.tier, GROUPS.index(self.group), self.window_s or 0, self._aggregation_order

    @property
    def display_key(self) -> tuple[int, str, int, int]:
        """Order in the written file: group, column, window, aggregation."""
        column = self.where or self.column or ""
        return GROUPS.index(self.group), column, self.window_s or 0, self._aggregation_order

    @property
    def _aggregation_order(self) -> int:
        primitive = getattr(getattr(self.ft_feature, "primitive", None), "name", None)
        if primitive in _MONETARY_ORDER:
            return _MONETARY_ORDER.index(primitive)
        return 0


def prepare_events(frame: pd.DataFrame, profile: SampleProfile) -> pd.DataFrame:
    """The events the worker would accept, with the schema's columns, typed for featuretools.

    The timestamp becomes a naive UTC datetime (featuretools' time index); numbers are
    float64, flags nullable booleans; `_event_id` is the row index.
    """
    keep = accepted_events(frame, profile)
    schema = profile.schema
    events = frame.loc[keep, list(schema)].copy()
    event_ts = profile.event_ts[keep]
    for column in profile.columns:
        if column.name not in schema:
            continue
        if column.kind == "numeric":
            events[column.name] = pd.to_numeric(events[column.name], errors="coerce").astype(
                np.float64
            )
        elif column.kind == "boolean":
            events[column.name] = events[column.name].astype("boolean")
        elif column.kind in ("categorical", "id", "entity"):
            events[column.name] = events[column.name].astype(object)
    # the worker's float seconds back to their exact microseconds (`times`), so that
    # featuretools orders events and cutoffs as the service does
    events[profile.timestamp] = pd.to_datetime(datetimes_of_seconds(event_ts).astype("M8[ns]"))
    events.insert(0, _EVENT_ID, np.arange(len(events)))
    return events.reset_index(drop=True)


def build_entityset(events: pd.DataFrame, profile: SampleProfile) -> Any:
    """An EntitySet: `events` (the child) and one parent dataframe per entity column.

    Parents are named after their join key column; the categoricals' most frequent
    values are set as interesting values.
    """
    import featuretools as ft

    logical_types: dict[str, str] = {}
    for column in profile.columns:
        if column.name not in events.columns or column.kind == "timestamp":
            continue
        if column.kind == "numeric":
            logical_types[column.name] = "Double"
        elif column.kind == "boolean":
            logical_types[column.name] = "BooleanNullable"
        else:  # entity, categorical, id
            logical_types[column.name] = "Categorical"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        es = ft.EntitySet(id="sample")
        es.add_dataframe(
            dataframe_name=EVENTS,
            dataframe=events,
            index=_EVENT_ID,
            time_index=profile.timestamp,
            logical_types=logical_types,
        )
        for entity in profile.entities:
            es.normalize_dataframe(EVENTS, entity, entity)
        values = {
            c.name: list(c.interesting_values)
            for c in profile.of_kind("categorical")
            if c.interesting_values
        }
        if values:
            es.add_interesting_values(dataframe_name=EVENTS, values=values)
    return es


def synthesize(
    es: Any,
    profile: SampleProfile,
    windows: Sequence[int],
    entity_names: dict[str, str] | None = None,
) -> list[Candidate]:
    """Every candidate for every entity, in priority order within each entity.

    `entity_names` maps an entity column to the word used in descriptions
    (default: the column without `_id`).
    """
    import featuretools as ft

    names = entity_names or {}
    kinds = {c.kind for c in profile.columns}
    primitives = ["count", "time_since_last"]
    if "numeric" in kinds:
        primitives += ["sum", "mean", "min", "max", "std"]
    if kinds & {"categorical", "id", "entity"}:
        primitives.append("num_unique")
    if "boolean" in kinds:
        primitives += ["num_true", "percent_true"]
    out: list[Candidate] = []
    for entity in profile.entities:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            features = ft.dfs(
                entityset=es,
                target_dataframe_name=entity,
                agg_primitives=primitives,
                trans_primitives=[],
                where_primitives=["count"],
                max_depth=1,
                features_only=True,
            )
        word = names.get(entity) or _entity_word(entity)
        found: list[Candidate] = []
        for feature in features:
            found.extend(_map(feature, entity, word, windows, profile))
        found.sort(key=lambda c: c.rank)
        out.extend(_unique_names(found))
    return out


def feature_matrix(es: Any, candidates: Sequence[Candidate], cutoffs: pd.DataFrame) -> pd.DataFrame:
    """featuretools' values of `candidates` (all of one entity) at `cutoffs`.

    `cutoffs` has the entity column and a `time` column (naive UTC datetimes); the
    result has one row per cutoff row, in order, and one column per candidate name.
    """
    import featuretools as ft

    if not candidates:
        return pd.DataFrame(index=range(len(cutoffs)))
    entity = candidates[0].entity_column
    # `_row` rides along (featuretools keeps extra cutoff columns) to restore the order
    cutoff_time = pd.DataFrame(
        {
            "instance_id": cutoffs[entity].to_numpy(),
            "time": cutoffs["time"].to_numpy(),
            "_row": np.arange(len(cutoffs)),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        matrix = ft.calculate_feature_matrix(
            features=[c.ft_feature for c in candidates],
            entityset=es,
            cutoff_time=cutoff_time,
            cutoff_time_in_index=False,
        )
    matrix = matrix.sort_values("_row").reset_index(drop=True)
    return pd.DataFrame({c.name: matrix[c.ft_feature.get_name()].to_numpy() for c in candidates})


def _map(
    feature: Any, entity: str, word: str, windows: Sequence[int], profile: SampleProfile
) -> list[Candidate]:
    import featuretools as ft

    primitive = feature.primitive.name
    if primitive not in PRIMITIVE_GROUPS:
        return []
    aggregation, group = ours(primitive), PRIMITIVE_GROUPS[primitive]
    base = feature.base_features[0].get_name()
    column = None if primitive in ("count", "time_since_last") else base
    if column == entity:
        return []  # the distinct count of the view's own key is always 1
    where = None
    tier = _TIERS.get(primitive, 1)
    if feature.where is not None:
        if primitive != "count":
            return []
        where_column, value = _where_parts(feature.where)
        if where_column is None or where_column == entity:
            return []  # per-value counts of the view's own key: the count, or 0
        where, group = f"{where_column} == {value!r}", "per-value"
        frequent = profile.column(where_column).interesting_values[:2]
        tier = 1 if value in frequent else 2
    elif primitive == "num_true":
        where = f"{base} == True"
    if primitive == "time_since_last":
        return [
            Candidate(
                name="secs_since_last_event",
                entity_column=entity,
                aggregation=aggregation,
                column=None,
                window_s=None,
                where=None,
                group=group,
                description=f"Seconds since the {word}'s most recent event.",
                ft_feature=feature,
            )
        ]
    out = []
    for window in windows:
        twin = ft.Feature(
            feature.base_features[0],
            parent_dataframe_name=entity,
            primitive=feature.primitive,
            where=feature.where,
            use_previous=f"{window} seconds",
        )
        out.append(
            Candidate(
                name=_name(primitive, aggregation, column, feature.where, window),
                entity_column=entity,
                aggregation=aggregation,
                column=None if primitive == "num_true" else column,
                window_s=window,
                where=where,
                group=group,
                description=_describe(primitive, column, feature.where, word, window),
                ft_feature=twin,
                tier=tier,
            )
        )
    return out


def _where_parts(where: Any) -> tuple[str | None, Any]:
    """(column, value) of a DFS interesting-value filter `column = value`."""
    primitive = getattr(where, "primitive", None)
    value = getattr(primitive, "value", None)
    if primitive is None or primitive.name != "equal_scalar" or value is None:
        return None, None
    column = where.base_features[0].get_name()
    return column, value.item() if hasattr(value, "item") else value


def _name(primitive: str, aggregation: str, column: str | None, where: Any, window: int) -> str:
    w = format_duration(window)
    if where is not None:
        column_name, value = _where_parts(where)
        return f"{column_name}_{_slug(value)}_count_{w}"
    if primitive == "count":
        return f"count_{w}"
    if primitive == "num_true":
        return f"{column}_true_count_{w}"
    if primitive == "percent_true":
        return f"{column}_true_share_{w}"
    return f"{column}_{aggregation}_{w}"


def _describe(primitive: str, column: str | None, where: Any, word: str, window: int) -> str:
    span = window_words(window)
    if where is not None:
        column_name, value = _where_parts(where)
        return f"Events of the {word} with {column_name} = {value!r} in the last {span}."
    texts = {
        "count": f"Events of the {word} in the last {span}.",
        "sum": f"Sum of {column} over the {word}'s events in the last {span}.",
        "mean": f"Mean {column} of the {word}'s events in the last {span}.",
        "min": f"Smallest {column} among the {word}'s events in the last {span}.",
        "max": f"Largest {column} among the {word}'s events in the last {span}.",
        "std": f"Standard deviation of {column} over the {word}'s events in the last {span}.",
        "num_unique": f"Different {column} values among the {word}'s events in the last {span}.",
        "num_true": f"Events of the {word} with {column} true in the last {span}.",
        "percent_true": f"Share of the {word}'s events with {column} true in the last {span}.",
    }
    return texts[primitive]


def window_words(seconds: int) -> str:
    """A window in words: `hour`, `day`, `7 days`, `15 minutes`.

    >>> window_words(3600), window_words(86400), window_words(604800), window_words(900)
    ('hour', 'day', '7 days', '15 minutes')
    """
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            n = seconds // size
            return unit if n == 1 else f"{n} {unit}s"
    return f"{seconds} seconds"


def _entity_word(column: str) -> str:
    word = re.sub(r"(_id|_key|Id|ID)$", "", column).replace("_", " ").strip()
    return word or column


def _slug(value: Any) -> str:
    text = re.sub(r"[^0-9A-Za-z]+", "_", str(value)).strip("_").lower()
    return text or "blank"


def _unique_names(candidates: list[Candidate]) -> list[Candidate]:
    """Make names unique within a view (two values may slug alike: `A b`, `a_b`)."""
    seen: dict[str, int] = {}
    out = []
    for candidate in candidates:
        name = candidate.name
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[candidate.name]}"
        else:
            seen[name] = 1
        if not re.match(r"^[A-Za-z_]", name):
            name = f"f_{name}"
        out.append(_renamed(candidate, name))
    return out


def _renamed(candidate: Candidate, name: str) -> Candidate:
    if name == candidate.name:
        return candidate
    return Candidate(
        name=name,
        entity_column=candidate.entity_column,
        aggregation=candidate.aggregation,
        column=candidate.column,
        window_s=candidate.window_s,
        where=candidate.where,
        group=candidate.group,
        description=candidate.description,
        ft_feature=candidate.ft_feature,
        tier=candidate.tier,
    )
