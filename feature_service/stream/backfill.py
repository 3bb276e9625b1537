"""Backfill: build a view's online state from the offline log, beside the running stream.

A view added to the definitions is computed by the stream from the moment a worker
runs it; events that arrived before are only in the offline log. `backfill_view`
folds exactly those into the view's online state, so the view answers for entities
whose events came last week, without replaying Kafka.

The boundary (no gap, no double count). Per partition ``p`` of the view's topic:

- The worker, with every commit of ``p``, does ``HSETNX fs:vstart:{<source>}:<view> p
  <offset>`` for each of its views, in the same script as the offsets: ``offset`` is
  the first offset that commit covers. The first commit that folded the view into
  state therefore leaves the offset from which the stream owns the view, ``start[p]``.
- Backfill folds the log's events of ``p`` with ``_offset < start[p]`` (late ones, and
  those without the view's join key, left out, as the stream does: `plan.ViewPlan`);
  the stream folded every event at or above it. Each event is in
  exactly one of the two.
- A partition without ``start[p]`` (no commit since the view was deployed, e.g. an
  idle partition) gets one from backfill: under WATCH of the partition's offset key,
  ``HSETNX start[p] = committed offset``. Precondition: every running worker already
  runs the definitions with the view (`feature-service apply` restarts them), so
  the next commit of ``p`` starts there and folds the view.

Concurrency with the worker. The worker keeps entity states in memory between
commits; a backfill write would be overwritten by a commit computed from a stale copy.
So backfill writes each entity as the worker does (``redis_layout.apply_states``),
which bumps the entity's version: a worker whose cached copy predates the write fails its
compare-and-set and replays from its committed offsets with fresh states (the ordinary
fenced path, exactly once). Backfill compares-and-sets on the same version, and
re-reads and retries the entities a commit touched meanwhile. On a Redis Cluster
every write touches one key, so this works there too.

Idempotence: each entity state written is marked as backfilled (``bf``, in the same
write); entities that have the mark are skipped, so a backfill interrupted halfway can
be run again. Backfill writes through the worker's own state writer
(`aggregation.state.write`).
A view whose definition changed under the same name has state written by the old
layout: backfill refuses it (`LayoutMismatchError`); give the view a new name.

Each entity's merged state is compacted at the committed watermark of its partitions,
as the worker would; then the view reads exactly as if the stream had seen every event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import pyarrow as pa
from redis.asyncio import Redis
from redis.exceptions import WatchError

from feature_service.aggregation.state import Events, LayoutMismatchError, decode, version_of, write
from feature_service.definitions import FeatureView, Registry
from feature_service.events.parsing import column_from_arrow
from feature_service.offline.event_log import EventLog
from feature_service.offline.log_events import LogEvents
from feature_service.online.redis_layout import (
    APPLY_ENTITIES,
    StateWrite,
    apply_states,
    entity_key,
    expiry_seconds,
    offset_key,
    read_states,
    view_layout,
    view_start_key,
)
from feature_service.plan import view_plan

CHUNK_ENTITIES = 200
"""Entities read and written per round trip (`redis_layout.read_states`, `apply_states`)."""


@dataclass
class BackfillReport:
    view: str
    starts: dict[int, int] = field(default_factory=dict)  # partition -> stream start offset
    events: int = 0  # folded from the log
    late: int = 0
    skipped: int = 0  # without the view's join key (null or empty)
    entities: int = 0  # written
    skipped_entities: int = 0  # already backfilled
    retries: int = 0


ProgressFn = Callable[[int, int], None]


async def stream_starts(redis: Redis, view: FeatureView) -> dict[int, int]:
    """Per partition, the offset from which the stream folds `view` (set if missing)."""
    source = view.source
    key = view_start_key(view.name, source.name)
    starts: dict[int, int] = {}
    for p in range(source.partitions):
        while True:
            async with redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(offset_key(source.name, p), key)
                    value = await pipe.hget(key, str(p))
                    if value is not None:
                        starts[p] = int(value)
                        break
                    raw = await pipe.get(offset_key(source.name, p))
                    committed = 0 if raw is None else int(orjson.loads(raw)[0])
                    pipe.multi()
                    pipe.hsetnx(key, str(p), committed)
                    await pipe.execute()
                    starts[p] = committed
                    break
                except WatchError:
                    continue
    return starts


async def partition_watermarks(redis: Redis, view: FeatureView) -> dict[int, float]:
    source = view.source
    raw = await redis.mget([offset_key(source.name, p) for p in range(source.partitions)])
    out = {}
    for p, value in enumerate(raw):
        if value is not None:
            watermark = orjson.loads(value)[1]
            if watermark is not None:
                out[p] = float(watermark)
    return out


def log_events(
    view: FeatureView, log: EventLog, starts: dict[int, int]
) -> tuple[dict[str, Any], int, int]:
    """The view's events below the stream's start offsets, late ones and those without
    the view's join key left out (columns: ts, seq, partition, entity, the layout's
    columns, passes); how many were late, and how many had no key for the view."""
    plan = view_plan(view)
    needed = plan.needed_columns
    log_events = LogEvents.read(view, log, needed)  # each (partition, offset) once
    table = log_events.table
    before = log_events.below(starts)
    taken = log_events.taken(view)
    late = log_events.late(view) & taken
    keep = np.flatnonzero(before & taken & ~late)
    n_late = int((before & late).sum())
    n_skipped = int((before & ~taken).sum())
    taken = pa.array(keep)
    columns = {
        c: column_from_arrow(table[c].take(taken), view.source.column_kinds[c]) for c in needed
    }
    events = {
        "ts": log_events.ts[keep],
        "seq": log_events.seq(keep),
        "partition": log_events.partition[keep],
        "entity": view.entity.key.ids([columns[c] for c in view.entity.join_keys]),
        "columns": {c: columns[c] for c in plan.layout.columns},
        "passes": plan.passes(columns, keep.size),
    }
    return events, n_late, n_skipped


async def backfill_view(
    registry: Registry,
    view_name: str,
    redis: Redis,
    log: EventLog,
    progress: ProgressFn | None = None,
    chunk: int = CHUNK_ENTITIES,
) -> BackfillReport:
    """Fold the log's events below the stream's start into `view_name`'s online state."""
    view = registry.feature_views.get(view_name)
    if view is None:
        known = ", ".join(sorted(registry.feature_views))
        raise ValueError(f"unknown feature view {view_name!r} (known: {known})")
    report = BackfillReport(view.name)
    report.starts = await stream_starts(redis, view)
    watermarks = await partition_watermarks(redis, view)
    events, report.late, report.skipped = await asyncio.to_thread(
        log_events, view, log, report.starts
    )
    report.events = int(events["ts"].size)
    entities = np.unique(events["entity"]).tolist() if report.events else []
    order = np.argsort(events["entity"], kind="stable")
    sorted_entities = events["entity"][order]
    total = len(entities)
    for begin in range(0, total, chunk):
        names = entities[begin : begin + chunk]
        lo = int(np.searchsorted(sorted_entities, names[0], "left"))
        hi = int(np.searchsorted(sorted_entities, names[-1], "right"))
        idx = order[lo:hi]
        await _write_chunk(
            redis, view, names, {k: _take(v, idx) for k, v in events.items()}, watermarks, report
        )
        if progress is not None:
            progress(min(begin + chunk, total), total)
    return report


def _take(value: Any, idx: npt.NDArray[np.intp]) -> Any:
    if isinstance(value, dict):
        return {k: v[idx] for k, v in value.items()}
    return value[idx]


async def _write_chunk(
    redis: Redis,
    view: FeatureView,
    entities: list[str],
    events: dict[str, Any],
    watermarks: dict[int, float],
    report: BackfillReport,
) -> None:
    """Fold `events` (of `entities`) into their stored states, compacted at the newest
    committed watermark of their partitions; compare-and-set, retried until it holds."""
    layout = view_layout(view)
    expiry = expiry_seconds(view)
    sha = str(await redis.script_load(APPLY_ENTITIES))
    pending = list(entities)
    while pending:
        keys = [entity_key(view.name, e) for e in pending]
        stored = await read_states(redis, keys)
        try:
            states = decode(layout, stored, coded=True)
        except LayoutMismatchError:
            raise LayoutMismatchError(
                f"the online state of feature view {view.name!r} was written by another "
                "definition of this view; give the changed view a new name and backfill that"
            ) from None
        todo = [i for i, meta in enumerate(states.metas) if meta is None or not meta.backfilled]
        report.skipped_entities += len(pending) - len(todo)
        if not todo:
            return
        if len(todo) < len(pending):
            pending = [pending[i] for i in todo]
            continue  # read only those again
        index = pd.Index(pending)
        code = np.asarray(index.get_indexer(events["entity"]), dtype=np.int64)
        mine = np.flatnonzero(code >= 0)
        m = len(pending)
        compact_at = np.full(m, -np.inf)
        last = np.full(m, np.nan)
        wm = np.array([watermarks.get(int(p), -np.inf) for p in events["partition"][mine]])
        np.maximum.at(compact_at, code[mine], wm)
        newest = np.full(m, -np.inf)
        np.maximum.at(newest, code[mine], events["ts"][mine])
        last[np.isfinite(newest)] = newest[np.isfinite(newest)]
        new = Events.of(
            layout,
            code[mine],
            events["ts"][mine],
            events["seq"][mine],
            {c: v[mine] for c, v in events["columns"].items()},
            events["passes"][mine],
        )
        values = write(layout, states, new, compact_at, last, backfilled=True)
        writes = [
            StateWrite(key, version_of(old), value)
            for key, old, value in zip(keys, stored, values, strict=True)
        ]
        lost = await apply_states(redis, sha, writes, expiry)
        retry = [e for i, e in enumerate(pending) if i in lost]
        report.entities += m - len(retry)
        if retry:  # a worker's commit changed the entity since we read it: read again
            report.retries += 1
        pending = retry
