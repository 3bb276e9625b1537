"""From a sample to a reviewed set of features: profile, DFS, prune, and choose names.

`generate(sample, options, existing)` runs the whole pipeline and returns a `Generated`
(what `render` writes and the CLI summarises). Names are chosen so that the output
loads together with the definitions already deployed (`existing`):

- an entity column that an existing entity joins on reuses that entity; otherwise the
  entity is the column without `_id` (`customer_id` -> `customer`), made unique;
- the source is reused when an existing one has the derived name (`--source`, else the
  file stem) or the `--topic`, the same timestamp field and every entity column: then
  the generated views read the events already flowing (and already in the offline log,
  so they can be backfilled), and only columns of its schema are used. Otherwise a new
  source is declared under a unique name, its topic named like it;
- one view per entity, `<entity>_<source>` (or `--view-name`), made unique;
- a link column (`types`: a device, an IP address, a card) gets a view too, over an
  entity named as an entity column's would be (`device_id` -> `device`, reused where
  an existing entity joins on it), `<entity>_<source>`: e.g. `device_transactions`,
  the distinct customers seen with each device per window.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from feature_service.autofe.dfs import Candidate, build_entityset, prepare_events, synthesize
from feature_service.autofe.pruning import DEFAULT_THRESHOLD, Decision, prune
from feature_service.autofe.ranking import (
    TIME_COLUMN,
    Ranking,
    label_rows_from_column,
    point_in_time_values,
    rank,
)
from feature_service.autofe.sampling import Sample
from feature_service.autofe.types import (
    ColumnProfile,
    SampleProfile,
    accepted_events,
    profile_columns,
)
from feature_service.definitions import Registry
from feature_service.keys import key_present

# Rows (key, time) per view on which candidates are measured.
CUTOFF_ROWS = 1000


@dataclass(frozen=True)
class GenerateOptions:
    entities: Sequence[str]
    timestamp: str | None
    windows: Sequence[int]
    max_features: int | None = None
    source: str | None = None
    topic: str | None = None
    view_name: str | None = None
    ttl_s: int = 30 * 86400
    threshold: float = DEFAULT_THRESHOLD
    cutoff_rows: int = CUTOFF_ROWS
    label: str | None = None  # a label column of the sample (`ranking`)


@dataclass(frozen=True)
class Naming:
    """The names the generated definitions use, and which of them are new."""

    entity_names: dict[str, str]  # key column (entity or link) -> entity name
    new_entities: tuple[str, ...]  # key columns whose entity to declare
    source: str
    topic: str
    new_source: bool
    partitions: int
    view_names: dict[str, str]  # key column -> view name


@dataclass
class Generated:
    """Everything a generation produced, for rendering, summarising and testing."""

    sample: Sample
    options: GenerateOptions
    profile: SampleProfile
    naming: Naming
    events: pd.DataFrame = field(repr=False)
    entityset: Any = field(repr=False)
    decisions: list[Decision] = field(repr=False)
    ranking: Ranking | None = None

    @property
    def kept(self) -> list[Candidate]:
        return [d.candidate for d in self.decisions if d.kept]

    def kept_of(self, entity_column: str) -> list[Candidate]:
        """The kept features of one view (by its key column), in the order the file
        lists them."""
        kept = [c for c in self.kept if c.entity_column == entity_column]
        return sorted(kept, key=lambda c: c.display_key)

    @property
    def span_s(self) -> float:
        ts = self.profile.event_ts
        return float(np.nanmax(ts) - np.nanmin(ts)) if len(ts) else 0.0


def generate(
    sample: Sample,
    options: GenerateOptions,
    existing: Registry | None = None,
    labels: pd.DataFrame | None = None,
) -> Generated:
    """Profile the sample, synthesise and prune candidates, and name everything.

    With `options.label` (a column of the sample) or `labels` (rows of the entity
    columns, `event_timestamp` and `label`, `ranking.read_labels`), the candidates
    pruning kept are ranked by their point-in-time association with the label and
    the best `max_features` kept (`ranking`).
    """
    if not options.windows:
        raise ValueError("give at least one window, e.g. --windows 1h,1d,7d")
    if options.view_name is not None and len(options.entities) > 1:
        raise ValueError("--view-name names one view: use it with a single --entity")
    if len(set(options.entities)) != len(options.entities):
        raise ValueError("an --entity column is given twice")
    registry = existing or Registry()
    if options.label is not None and labels is not None:
        raise ValueError("give the label as one of --label COLUMN or --labels FILE")
    profile = profile_columns(
        sample.frame,
        options.entities,
        options.timestamp,
        absent=sample.absent,
        label=options.label,
    )
    source_name, topic, reused = _choose_source(sample, options, profile, registry)
    if reused is not None:
        profile = _restrict(profile, reused)
    events = prepare_events(sample.frame, profile)
    if events.empty:
        raise ValueError(
            f"{sample.origin}: no event of the sample would be accepted "
            "(every one misses an entity or has a badly typed field)"
        )
    naming = _choose_names(profile, options, registry, source_name, topic, reused)
    es = build_entityset(events, profile)
    words = {col: name.replace("_", " ") for col, name in naming.entity_names.items()}
    candidates = synthesize(es, profile, sorted(set(options.windows)), words)
    matrices = None
    if options.cutoff_rows > 0:  # 0: keep every candidate unmeasured (tests, quick looks)
        # by our engine, the values it would serve to a model scoring the sampled events
        matrices = {
            key: point_in_time_values(
                [c for c in candidates if c.entity_column == key],
                sample.frame,
                profile,
                sample_cutoffs(sample.frame, profile, key, options.cutoff_rows),
            )
            for key in profile.keys
        }
    ranked = options.label is not None or labels is not None
    limit = None if ranked else options.max_features
    decisions = prune(candidates, matrices, limit, options.threshold)
    ranking = None
    if ranked:
        if labels is None:
            assert options.label is not None
            labels = label_rows_from_column(sample.frame, profile, options.label)
        label = options.label or "label"
        decisions, ranking = rank(
            decisions, sample.frame, profile, labels, label, options.max_features
        )
    return Generated(sample, options, profile, naming, events, es, decisions, ranking)


def sample_cutoffs(
    frame: pd.DataFrame, profile: SampleProfile, key: str, rows: int
) -> pd.DataFrame:
    """(key, `event_timestamp`) rows to measure a view's candidates at: the keys and
    times of up to `rows` randomly chosen events the worker would accept that have the
    key, in sample order; a fixed seed keeps a generation reproducible. The values are
    taken just before each time (`ranking.point_in_time_values`): what a model scoring
    the event would be served.

    >>> frame = pd.DataFrame({"user_id": ["u1", "u2", None, "u1"], "ts": [1.0, 2.0, 3.0, 4.0]})
    >>> sample_cutoffs(frame, profile_columns(frame, ["user_id"], "ts"), "user_id", 10)
      user_id  event_timestamp
    0      u1              1.0
    1      u2              2.0
    2      u1              4.0
    """
    present = accepted_events(frame, profile) & key_present(frame[key].to_numpy(dtype=object))
    chosen = np.flatnonzero(present)
    if chosen.size > rows:
        chosen = np.sort(np.random.default_rng(0).choice(chosen, rows, replace=False))
    return pd.DataFrame({key: frame[key].to_numpy()[chosen], TIME_COLUMN: profile.event_ts[chosen]})


def _choose_source(
    sample: Sample, options: GenerateOptions, profile: SampleProfile, registry: Registry
) -> tuple[str, str, Any]:
    """(name, topic, the existing Source reused or None)."""
    wanted = options.source or (
        identifier(options.topic) if options.topic else identifier(Path(sample.origin).stem)
    )
    for source in registry.sources.values():
        same = source.name == wanted or (
            options.topic is not None and source.topic == options.topic
        )
        fits = source.timestamp_field == profile.timestamp and all(
            e in source.schema for e in profile.entities
        )
        if same and fits:
            return source.name, source.topic, source
        if same and options.source is not None:
            raise ValueError(
                f"source {source.name!r} exists but does not fit the sample: it needs "
                f"timestamp field {profile.timestamp!r} and columns {', '.join(profile.entities)}"
            )
    topics = {s.topic for s in registry.sources.values()}
    name = _unique(wanted, set(registry.sources))
    topic = options.topic or name
    if topic in topics:
        topic = _unique(topic, topics, sep="-")
    return name, topic, None


def _restrict(profile: SampleProfile, source: Any) -> SampleProfile:
    """Use only the columns of an existing source, with its schema types."""
    columns: list[ColumnProfile] = []
    for column in profile.columns:
        wire = source.schema.get(column.name)
        if column.kind == "label":
            columns.append(column)
        elif column.kind in ("entity", "timestamp"):
            columns.append(replace(column, wire_type=wire or column.wire_type))
        elif wire is None:
            columns.append(
                replace(column, kind="skip", reason=f"not in source {source.name!r}'s schema")
            )
        elif column.kind == "skip" or _compatible(column, wire):
            columns.append(replace(column, wire_type=wire))
        else:
            columns.append(
                replace(
                    column,
                    kind="skip",
                    reason=f"{column.kind} on the sample but {wire} in source {source.name!r}",
                )
            )
    return replace(profile, columns=columns)


def _compatible(column: ColumnProfile, wire: str) -> bool:
    if column.kind == "numeric":
        return wire in ("int", "float")
    if column.kind == "boolean":
        return wire == "bool"
    return wire in ("string", "int")


def _choose_names(
    profile: SampleProfile,
    options: GenerateOptions,
    registry: Registry,
    source: str,
    topic: str,
    reused: Any,
) -> Naming:
    taken = set(registry.entities)
    entity_names: dict[str, str] = {}
    new_entities = []
    for column in profile.keys:
        existing = next((e for e in registry.entities.values() if e.join_keys == (column,)), None)
        if existing is not None:
            entity_names[column] = existing.name
            continue
        name = _unique(identifier(re.sub(r"(_id|_key|Id|ID)$", "", column) or column), taken)
        taken.add(name)
        entity_names[column] = name
        new_entities.append(column)
    views = set(registry.feature_views)
    view_names = {}
    for column in profile.keys:
        named = options.view_name if column in profile.entities else None
        wanted = named or f"{entity_names[column]}_{source}"
        if named is not None and wanted in views:
            raise ValueError(f"feature view {wanted!r} already exists; choose another --view-name")
        name = _unique(wanted, views, suffix="auto")
        views.add(name)
        view_names[column] = name
    return Naming(
        entity_names=entity_names,
        new_entities=tuple(new_entities),
        source=source,
        topic=topic,
        new_source=reused is None,
        partitions=reused.partitions if reused is not None else 3,
        view_names=view_names,
    )


def identifier(text: str) -> str:
    """A definitions name from free text: letters, digits and `_`, not starting with a digit.

    >>> identifier("click-stream.v2"), identifier("2024 sales")
    ('click_stream_v2', 'n_2024_sales')
    """
    name = re.sub(r"[^0-9A-Za-z_]+", "_", text).strip("_") or "events"
    return f"n_{name}" if name[0].isdigit() else name[:100]


def _unique(name: str, taken: set[str], suffix: str = "", sep: str = "_") -> str:
    if name not in taken:
        return name
    stem = f"{name}{sep}{suffix}" if suffix else name
    if suffix and stem not in taken:
        return stem
    n = 2
    while f"{stem}{sep}{n}" in taken:
        n += 1
    return f"{stem}{sep}{n}"
