"""Online/offline parity check: the same (entity, t) read from Redis and from the log.

`check_parity(registry, redis, log, sample=N)` picks N points (view, entity, t), reads
each online as the API does (`online.reader.read_views` at ``as_of = t``) and offline
as a training set of those points (`offline.engines.historical_frame`, by the engine
named: ``local``, or ``spark`` in the session given), and reports every feature that
differs by more than a relative 1e-9. It is DESIGN.md's central promise as a command
(`feature-service parity [--engine spark]`), usable against production as well as in
tests.

Choices:

- Snapshot: the offline side only reads events below the offsets online state has
  committed (`fs:o:{<source>}:<p>`), read before the online reads; if an offset moved
  while reading (the stream is live), the whole sample is read again (up to
  `attempts` times) and the report says whether it ever got a still snapshot.
- Points: a random committed event the view takes (its join key neither null nor
  empty, `plan.ViewPlan.takes`) gives the entity; ``t`` is that event's
  time, or a random time up to one longest window (at least an hour) after it, capped
  at the source's watermark. Online state only answers within its retention (one
  longest window behind the watermark, `state.OutsideRetentionError`): such points are
  reported as skipped, not as mismatches.
- Offline side: the points of a view that online state answered are the rows of one
  training set of all its features, computed by the engine asked (``local``: a small
  log in this process, a larger one in buckets; ``spark``: on Spark's executors)
  over the committed events (`max_offsets`): what `training-set --engine` gives for
  those rows, so the check covers the engine too.
- An entity online state does not know (`NOT_FOUND`) is served counts 0 and nulls
  (`online.reader`), which is what the offline side returns for an entity without events; so a view
  whose online state was never built (e.g. added without a backfill) shows as
  mismatches wherever it has events.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from redis.asyncio import Redis

from feature_service.aggregation.registry import aggregation
from feature_service.aggregation.spec import FeatureLike, aggregation_of
from feature_service.aggregation.state import OutsideRetentionError
from feature_service.aggregation.values import plain_value
from feature_service.definitions import FeatureView, Registry, Source
from feature_service.derived import derive, derive_rows, needs
from feature_service.expressions import floats_equal
from feature_service.offline.engines import check_engine, historical_frame
from feature_service.offline.event_log import EventLog
from feature_service.offline.historical import TIMESTAMP_COLUMN
from feature_service.offline.log_events import LogEvents
from feature_service.online.reader import read_views
from feature_service.online.redis_layout import offset_key


@dataclass(frozen=True)
class Mismatch:
    view: str
    entity: str
    t: float
    feature: str
    online: Any
    offline: Any

    def __str__(self) -> str:
        return (
            f"{self.view}:{self.feature} entity {self.entity!r} at t={self.t!r}: "
            f"online {self.online!r}, offline {self.offline!r}"
        )


@dataclass
class ParityReport:
    """What a check found. `still` is False when the stream moved during every attempt."""

    points: int = 0
    checked_points: int = 0
    checked_values: int = 0
    skipped: int = 0  # outside online retention
    mismatches: list[Mismatch] = field(default_factory=list)
    still: bool = True
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return not self.mismatches


async def committed_offsets(redis: Redis, source: Source) -> tuple[dict[int, int], float | None]:
    """Per partition, the next offset online state has committed; the newest watermark."""
    keys = [offset_key(source.name, p) for p in range(source.partitions)]
    raw = await redis.mget(keys)
    offsets: dict[int, int] = {}
    watermark: float | None = None
    for p, value in enumerate(raw):
        if value is None:
            continue
        next_offset, wm = orjson.loads(value)
        offsets[p] = int(next_offset)
        if wm is not None:
            watermark = wm if watermark is None else max(watermark, wm)
    return offsets, watermark


def same_value(feature: str | FeatureLike, online: Any, offline: Any) -> bool:
    """Equal, or for floating point aggregations within their tolerance (a relative 1e-9,
    `Aggregation.matches`); lists, maps and sketches exactly. `feature`: a feature (its
    aggregation bound to its parameters) or an aggregation's name."""
    agg = aggregation(feature).bind({}) if isinstance(feature, str) else aggregation_of(feature)
    return agg.matches(plain_value(online), plain_value(offline))


def pick_points(
    view: FeatureView,
    log: EventLog,
    offsets: dict[int, int],
    watermark: float | None,
    n: int,
    rng: np.random.Generator,
) -> list[tuple[str, float]]:
    """`n` (entity, t) points from the committed events of `view` (fewer if none)."""
    key = view.entity.key
    log_events = LogEvents.read(view, log, list(key.join_keys))
    table = log_events.table
    if table.num_rows == 0 or n <= 0:
        return []
    committed = np.flatnonzero(log_events.below(offsets) & log_events.taken(view))
    if committed.size == 0:
        return []
    chosen = rng.choice(committed, size=n, replace=committed.size < n)
    ts = log_events.ts
    reach = max(view.longest_window_s or 0, 3600)
    after = np.where(rng.random(n) < 0.3, 0.0, rng.uniform(0, reach, n))
    times = ts[chosen] + after
    if watermark is not None:
        times = np.minimum(times, watermark)
    where = pa.array(chosen)
    ids = key.arrow_ids([table[c].take(where) for c in key.join_keys]).to_pylist()
    return [(k, float(t)) for k, t in zip(ids, times, strict=True)]


async def _online(
    redis: Redis, view: FeatureView, points: Sequence[tuple[str, float]]
) -> list[dict[str, Any] | None]:
    """Online values per point (None: outside retention); an entity online state does not
    know has the values of no events, as the reader serves them."""
    out: list[dict[str, Any] | None] = []
    for entity, t in points:
        try:
            (row,) = (await read_views(redis, [(view, [entity])], t))[0]
        except OutsideRetentionError:
            out.append(None)
            continue
        out.append({f.name: row[f.name].value for f in view.features})  # derived: below
    return out


async def check_parity(
    registry: Registry,
    redis: Redis,
    log: EventLog,
    sample: int,
    views: Sequence[str] | None = None,
    seed: int | None = None,
    attempts: int = 3,
    *,
    engine: str = "local",
    spark: Any = None,
) -> ParityReport:
    """Read `sample` points online and offline and compare every feature (module doc);
    `engine` computes the offline side (`spark`: its session, default a local one)."""
    check_engine(engine)
    chosen = (
        [registry.feature_views[v] for v in views]
        if views
        else list(registry.feature_views.values())
    )
    rng = np.random.default_rng(seed)
    shares = np.bincount(rng.integers(0, len(chosen), sample), minlength=len(chosen))
    report = ParityReport()
    for attempt in range(1, attempts + 1):
        report = ParityReport(attempts=attempt)
        snapshots = {}
        for source in {v.source.name: v.source for v in chosen}.values():
            snapshots[source.name] = await committed_offsets(redis, source)
        reads = []
        for view, share in zip(chosen, shares.tolist(), strict=True):
            offsets, watermark = snapshots[view.source.name]
            points = await asyncio.to_thread(pick_points, view, log, offsets, watermark, share, rng)
            reads.append((view, points, await _online(redis, view, points)))
        moved = False
        for name, (offsets, _) in snapshots.items():
            again, _ = await committed_offsets(redis, registry.sources[name])
            moved |= again != offsets
        for view, points, online in reads:
            offsets, _ = snapshots[view.source.name]
            offline = _offline(registry, view, log, points, online, offsets, engine, spark)
            _compare(report, view, points, online, offline)
        report.still = not moved
        if not moved:
            break
    return report


def _offline(
    registry: Registry,
    view: FeatureView,
    log: EventLog,
    points: Sequence[tuple[str, float]],
    online: Sequence[dict[str, Any] | None],
    offsets: dict[int, int],
    engine: str,
    spark: Any,
) -> dict[str, Any]:
    """Each feature's offline values at the points online state answered, by `engine`
    over the events below `offsets`: a training set of those (entity, t) rows."""
    kept = [i for i, values in enumerate(online) if values is not None]
    if not kept:
        return {f.name: [] for f in view.features}
    key = view.entity.key
    # the ids back as key columns (their texts: rows' keys become ids by the same rule)
    values = [key.values(points[i][0]) for i in kept]
    rows = pd.DataFrame(
        {
            **{
                column: np.array([v[j] for v in values], dtype=object)
                for j, column in enumerate(key.join_keys)
            },
            TIMESTAMP_COLUMN: np.array([points[i][1] for i in kept], dtype=np.float64),
        }
    )
    # full names (view__feature): a feature named like the join key cannot clash
    train = historical_frame(
        registry, log, rows, [f"{view.name}:{f.name}" for f in view.features],
        full_feature_names=True, max_offsets={view.source.name: offsets},
        engine=engine, spark=spark,
    )  # fmt: skip
    return {f.name: train[f"{view.name}__{f.name}"].to_numpy() for f in view.features}


def _compare(
    report: ParityReport,
    view: FeatureView,
    points: Sequence[tuple[str, float]],
    online: Sequence[dict[str, Any] | None],
    offline: dict[str, Any],
) -> None:
    report.points += len(points)
    kept = [i for i, values in enumerate(online) if values is not None]
    report.skipped += len(points) - len(kept)
    if not kept:
        return
    report.checked_points += len(kept)
    for f in view.features:
        column = offline[f.name]
        for j, i in enumerate(kept):
            on = online[i]
            assert on is not None
            on_value, off_value = plain_value(on[f.name]), plain_value(column[j])
            report.checked_values += 1
            if not same_value(f, on_value, off_value):
                entity, t = points[i]
                report.mismatches.append(
                    Mismatch(view.name, entity, t, f.name, on_value, off_value)
                )
    _compare_derived(report, view, points, kept, online, offline)


def _compare_derived(
    report: ParityReport,
    view: FeatureView,
    points: Sequence[tuple[str, float]],
    kept: Sequence[int],
    online: Sequence[dict[str, Any] | None],
    offline: dict[str, Any],
) -> None:
    """Derived features that read no request field: evaluated on the online values
    row by row (as a lookup does) and on the offline columns (as a training set does).
    Where the aggregations they read agree to the bit, so must they; where those differ
    within their tolerance (already judged above), a relative 1e-6."""
    derived = [d for d in view.derived if not needs(view, [d.name]).request_fields]
    if not derived:
        return
    n = len(kept)
    names = [f.name for f in view.features]
    on_values = {name: [online[i][name] for i in kept] for name in names}  # type: ignore[index]
    on = derive_rows(view, derived, on_values, {}, n)
    off = derive(view, derived, offline, {}, n)
    for d in derived:
        reads = needs(view, [d.name]).aggregations
        for j, i in enumerate(kept):
            on_value, off_value = plain_value(on[d.name][j]), plain_value(off[d.name][j])
            report.checked_values += 1
            if floats_equal(on_value, off_value):
                continue
            exact = all(
                floats_equal(plain_value(on_values[a][j]), plain_value(offline[a][j]))
                for a in reads
            )
            close = (
                isinstance(on_value, float)
                and isinstance(off_value, float)
                and math.isclose(on_value, off_value, rel_tol=1e-6)
            )
            if exact or not close:
                entity, t = points[i]
                report.mismatches.append(
                    Mismatch(view.name, entity, t, d.name, on_value, off_value)
                )
