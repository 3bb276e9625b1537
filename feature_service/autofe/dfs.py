"""Candidate features: featuretools' Deep Feature Synthesis and our aggregations' proposals.

What to propose for which column is declared by the aggregations themselves
(`Aggregation.proposals`: the column roles of `types`, parameters, name, description,
group and tier), asked through `registry.proposed`. From there:

1. **DFS**: the sample becomes an EntitySet with the events as the child dataframe and
   one parent per entity column (`normalize_dataframe`). For each entity,
   `ft.dfs(features_only=True)` lists the aggregation features featuretools would build
   with the primitives of the proposed aggregations that have a featuretools twin
   (`Aggregation.featuretools`) and featuretools' flag primitives, the categoricals'
   frequent values as `where` filters ("interesting values"). Each feature maps onto
   the twin, kept only for a column of a role its proposal names:

   | featuretools          | ours                                  | group     |
   |-----------------------|---------------------------------------|-----------|
   | `TimeSinceLast`, `TimeSinceFirst` | the same (lifetime)       | recency   |
   | `AvgTimeBetween`      | `mean_gap` per window                 | recency   |
   | `Count`               | `count` per window                    | frequency |
   | `Sum`, `Mean`, `Min`, `Max`, `Std` | the same, per window     | monetary  |
   | `NumUnique`           | `count_distinct` per window           | breadth   |
   | `NumTrue`             | `count` where `flag == True`          | flags     |
   | `PercentTrue`         | `mean` of the flag (bool counts 0/1)  | flags     |
   | `Count` where `c = v` | `count` where `c == v`                | per-value |

   DFS has no windows: each candidate is repeated per window, and its featuretools
   twin gets `use_previous=<window>` (`ft_feature`, which `feature_matrix` computes:
   the independent oracle of the tests).
2. **Ours**: the proposed aggregations featuretools has no primitive for, for each
   column of their roles: `std_gap` per window, `approx_percentile` (p50, p90) of each
   measure, `frequent_k` (k 3) of each category, `approx_count_distinct` of each
   column with many values (in place of `count_distinct`, `types.MANY_VALUES`).
3. **Shares**: each per-value count over the window's count, a derived feature
   (`expression`) reading the two (`inputs`, written with it).
4. **Links**: a link column (`types`: a device, an IP address, a card) gets a view of
   its own, with what an identifier column is proposed, of each entity column: the
   distinct customers seen with a device per window.

Every candidate's values on the sample are measured with our own engine
(`ranking.point_in_time_values`), the values it would be served: featuretools has no
value for the kinds of 2-4, and its windowed `AvgTimeBetween` and `TimeSinceFirst`
(featuretools 1.31) fail on pandas 2 at some cutoff times.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from feature_service.aggregation.base import Aggregation, Params, Proposal, as_params
from feature_service.aggregation.registry import featuretools_twin, proposed
from feature_service.autofe.types import SampleProfile, accepted_events
from feature_service.durations import format_duration
from feature_service.times import datetimes_of_seconds

EVENTS = "events"
_EVENT_ID = "_event_id"

# featuretools' flag primitives: (the featuretools primitive whose twin computes it,
# tier). `num_true` is a count with `where: flag == True`; `percent_true` the flag's mean.
_FLAGS = {"num_true": ("count", 1), "percent_true": ("mean", 2)}


def ours(primitive: str) -> str:
    """The name of our aggregation computing featuretools' `primitive`.

    >>> ours("num_unique"), ours("percent_true")
    ('count_distinct', 'mean')
    """
    twin = featuretools_twin(_FLAGS[primitive][0] if primitive in _FLAGS else primitive)
    assert twin is not None, primitive
    return twin.name


GROUPS = ("recency", "frequency", "monetary", "breadth", "flags", "per-value", "distribution")
GROUP_TITLES = {
    "recency": "Recency: time since the first and last events, gaps between events",
    "frequency": "Frequency: events per window",
    "monetary": "Amounts: sum, mean, min, max, std and percentiles per window",
    "breadth": "Breadth: distinct values per window",
    "flags": "Flags: how often a true/false column is true",
    "per-value": "Per-value counts (DFS interesting values)",
    "distribution": "Distribution: the most frequent values, and the shares of the counted ones",
}
_SHARE_TIER = 2


@dataclass(frozen=True)
class Candidate:
    """One proposed feature of one view, with its featuretools twin if it has one.

    A derived feature (a share) has no `aggregation` but an `expression` over the
    features `inputs`, which are written with it.
    """

    name: str
    entity_column: str  # the view's key column (an entity, or a link)
    aggregation: str | None
    column: str | None
    window_s: int | None
    where: str | None
    group: str
    description: str
    ft_feature: Any = field(default=None, repr=False, compare=False)
    tier: int = 0
    params: Params = ()
    expression: str | None = None
    inputs: tuple[Candidate, ...] = field(default=(), repr=False)
    order: int = 0  # among the proposals (registry order): orders kinds within a group

    @property
    def rank(self) -> tuple[int, int, int, int]:
        """Priority (pruning order, --max-features): tier, group, shorter window, kind.

        Tier 0 is the core of RFM (recency, counts, sums and means); tier 1 adds maxima,
        distinct counts, flag counts, the time since the first event, mean gaps, 90th
        percentiles and the two most frequent values of a categorical; tier 2 the rest
        (minima, std, medians, gap spreads, shares, rarer values, most frequent values).
        """
        return self.tier, GROUPS.index(self.group), self.window_s or 0, self.order

    @property
    def display_key(self) -> tuple[int, str, int, int]:
        """Order in the written file: group, column, window, kind."""
        return GROUPS.index(self.group), self.subject, self.window_s or 0, self.order

    @property
    def subject(self) -> str:
        """What it is about: its `where`, its column, or its first input's subject."""
        if self.where or self.column:
            return self.where or self.column or ""
        return self.inputs[0].subject if self.inputs else ""

    def definition(self) -> dict[str, Any]:
        """Its feature entry in a definitions file, without the description."""
        out: dict[str, Any] = {"name": self.name}
        if self.expression is not None:
            out["expression"] = self.expression
            return out
        out["aggregation"] = self.aggregation
        if self.column is not None:
            out["column"] = self.column
        out.update(self.params)
        if self.window_s is not None:
            out["window"] = format_duration(self.window_s)
        if self.where is not None:
            out["where"] = self.where
        return out


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
    values are set as interesting values (not a link's: a count of one device's events
    says nothing of the others).
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
            if c.interesting_values and not c.link
        }
        if values:
            es.add_interesting_values(dataframe_name=EVENTS, values=values)
    return es


@dataclass(frozen=True)
class _Proposed:
    """A proposal bound to its aggregation, and its place among all proposals."""

    aggregation: Aggregation
    proposal: Proposal
    order: int


def synthesize(
    es: Any,
    profile: SampleProfile,
    windows: Sequence[int],
    entity_names: dict[str, str] | None = None,
) -> list[Candidate]:
    """Every candidate of every view (each entity's, then each link's), in priority
    order within each view.

    `entity_names` maps a view's key column to the word used in descriptions
    (default: the column without `_id`).
    """
    import featuretools as ft

    names = entity_names or {}
    roles = {"events"} | {c.role for c in profile.columns if c.role is not None}
    every = [_Proposed(a, p, i) for i, (a, p) in enumerate(proposed())]
    wanted = [p for p in every if roles & p.proposal.roles]
    twins = {p.aggregation.featuretools: p for p in wanted if p.aggregation.featuretools}
    primitives = list(twins) + (list(_FLAGS) if "flag" in roles else [])
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
            found.extend(_map(feature, entity, word, windows, profile, twins))
        for p in wanted:
            if not p.aggregation.featuretools:  # DFS proposes the twins
                for column in _columns(p.proposal, profile, exclude=entity):
                    found.extend(_proposed(p, entity, word, column, windows))
        found = _unique_names(sorted(found, key=lambda c: c.rank))
        found = _unique_names(found + _shares(found, word))
        out.extend(sorted(found, key=lambda c: c.rank))
    for link in profile.links:
        word = names.get(link) or _entity_word(link)
        found = []
        for entity in profile.entities:
            role = profile.column(entity).role
            for p in every:
                if role in p.proposal.roles:
                    found.extend(_proposed(p, link, word, entity, windows))
        out.extend(_unique_names(sorted(found, key=lambda c: c.rank)))
    return out


def feature_matrix(es: Any, candidates: Sequence[Candidate], cutoffs: pd.DataFrame) -> pd.DataFrame:
    """featuretools' values of `candidates` (all of one entity, each with a featuretools
    twin) at `cutoffs`: the independent oracle of the tests.

    `cutoffs` has the entity column and a `time` column (naive UTC datetimes); the
    result has one row per cutoff row, in order, and one column per candidate name.
    """
    import featuretools as ft

    if not candidates:
        return pd.DataFrame(index=range(len(cutoffs)))
    missing = [c.name for c in candidates if c.ft_feature is None]
    if missing:
        raise ValueError(f"no featuretools twin for {', '.join(missing)}")
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


def _columns(proposal: Proposal, profile: SampleProfile, exclude: str) -> list[str | None]:
    """The columns a proposal is for: None (the events) or each column of its roles but
    the view's own key (its distinct count is always 1)."""
    if "events" in proposal.roles:
        return [None]
    return [c.name for c in profile.columns if c.role in proposal.roles and c.name != exclude]


def _proposed(
    p: _Proposed, key: str, word: str, column: str | None, windows: Sequence[int]
) -> list[Candidate]:
    """A proposal's candidates for one column of one view: one per window (lifetime: one)."""
    proposal, agg = p.proposal, p.aggregation
    base = Candidate(
        name=_proposal_name(agg, proposal, column, None),
        entity_column=key,
        aggregation=agg.name,
        column=column,
        window_s=None,
        where=None,
        group=proposal.group,
        description=proposal.describe(column, word, ""),
        tier=proposal.tier,
        params=as_params(proposal.params),
        order=p.order,
    )
    if proposal.lifetime:
        return [base]
    return [
        replace(
            base,
            name=_proposal_name(agg, proposal, column, window),
            window_s=window,
            description=proposal.describe(column, word, window_words(window)),
        )
        for window in windows
    ]


def _proposal_name(
    agg: Aggregation, proposal: Proposal, column: str | None, window: int | None
) -> str:
    if proposal.lifetime and proposal.name is not None:
        return proposal.name
    parts = [column, proposal.name or agg.name, None if window is None else format_duration(window)]
    return "_".join(p for p in parts if p)


def _map(
    feature: Any,
    entity: str,
    word: str,
    windows: Sequence[int],
    profile: SampleProfile,
    twins: dict[str, _Proposed],
) -> list[Candidate]:
    """The candidates of one DFS feature: one per window (a lifetime proposal: one)."""
    import featuretools as ft

    primitive = feature.primitive.name
    base = feature.base_features[0].get_name()
    if primitive in _FLAGS:
        return _flags(feature, primitive, entity, word, windows)
    p = twins.get(primitive)
    if p is None:
        return []
    column = base if p.aggregation.needs_column else None
    if column == entity:
        return []  # the distinct count of the view's own key is always 1
    role = "events" if column is None else profile.column(column).role
    if role not in p.proposal.roles:
        return []  # e.g. a column of many values: counted approximately (ours)
    if feature.where is not None:
        return _per_value(feature, entity, word, windows, profile, p)
    if p.proposal.lifetime:
        return [replace(c, ft_feature=feature) for c in _proposed(p, entity, word, column, [])]
    return [
        replace(c, ft_feature=_windowed(ft, feature, entity, c.window_s))
        for c in _proposed(p, entity, word, column, windows)
    ]


def _windowed(ft: Any, feature: Any, entity: str, window: int | None) -> Any:
    """The featuretools twin of `feature` over the last `window` seconds."""
    return ft.Feature(
        feature.base_features[0],
        parent_dataframe_name=entity,
        primitive=feature.primitive,
        where=feature.where,
        use_previous=f"{window} seconds",
    )


def _flags(
    feature: Any, primitive: str, entity: str, word: str, windows: Sequence[int]
) -> list[Candidate]:
    import featuretools as ft

    if feature.where is not None:
        return []
    column = feature.base_features[0].get_name()
    counted = primitive == "num_true"
    out = []
    for window in windows:
        span, w = window_words(window), format_duration(window)
        out.append(
            Candidate(
                name=f"{column}_true_{'count' if counted else 'share'}_{w}",
                entity_column=entity,
                aggregation=ours(primitive),
                column=None if counted else column,
                window_s=window,
                where=f"{column} == True" if counted else None,
                group="flags",
                description=(
                    f"Events of the {word} with {column} true in the last {span}."
                    if counted
                    else f"Share of the {word}'s events with {column} true in the last {span}."
                ),
                ft_feature=_windowed(ft, feature, entity, window),
                tier=_FLAGS[primitive][1],
            )
        )
    return out


def _per_value(
    feature: Any,
    entity: str,
    word: str,
    windows: Sequence[int],
    profile: SampleProfile,
    p: _Proposed,
) -> list[Candidate]:
    """Counts of a DFS interesting value (`where: c == v`), per window."""
    import featuretools as ft

    where_column, value = _where_parts(feature.where)
    if where_column is None or where_column == entity:
        return []  # per-value counts of the view's own key: the count, or 0
    frequent = profile.column(where_column).interesting_values[:2]
    out = []
    for window in windows:
        out.append(
            Candidate(
                name=f"{where_column}_{_slug(value)}_count_{format_duration(window)}",
                entity_column=entity,
                aggregation=p.aggregation.name,
                column=None,
                window_s=window,
                where=f"{where_column} == {value!r}",
                group="per-value",
                description=f"Events of the {word} with {where_column} = {value!r} in the last "
                f"{window_words(window)}.",
                ft_feature=_windowed(ft, feature, entity, window),
                tier=1 if value in frequent else 2,
                order=p.order,
            )
        )
    return out


def _shares(candidates: Sequence[Candidate], word: str) -> list[Candidate]:
    """Each per-value count over its window's count: the share of the events with the
    value (a derived feature; null for a window without events)."""
    totals = {c.window_s: c for c in candidates if c.group == "frequency" and c.where is None}
    out = []
    for c in candidates:
        total = totals.get(c.window_s)
        if c.group != "per-value" or total is None or c.where is None or c.window_s is None:
            continue
        column, value = c.where.split(" == ", 1)
        stem, _, rest = c.name.rpartition("_count_")
        out.append(
            Candidate(
                name=f"{stem}_share_{rest}",
                entity_column=c.entity_column,
                aggregation=None,
                column=None,
                window_s=c.window_s,
                where=None,
                group="distribution",
                description=f"Share of the {word}'s events with {column} = {value} in the last "
                f"{window_words(c.window_s)}.",
                tier=_SHARE_TIER,
                expression=f"{c.name} / {total.name}",
                inputs=(c, total),
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
    """Make names unique within a view (two values may slug alike: `A b`, `a_b`); the
    first of a name keeps it, so a derived feature's inputs keep theirs."""
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
        out.append(candidate if name == candidate.name else replace(candidate, name=name))
    return out
