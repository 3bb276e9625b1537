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
- Backfill folds the log's events of ``p`` with ``_offset < start[p]`` (late ones left
  out, as always); the stream folded every event at or above it. Each event is in
  exactly one of the two.
- A partition without ``start[p]`` (no commit since the view was deployed, e.g. an
  idle partition) gets one from backfill: under WATCH of the partition's offset key,
  ``HSETNX start[p] = committed offset``. Precondition: every running worker already
  runs the definitions with the view (`feature-service apply` restarts them), so
  the next commit of ``p`` starts there and folds the view.

Concurrency with the worker. The worker keeps entity states in memory between
commits; a backfill write would be overwritten by a commit computed from a stale copy.
So backfill writes each entity with the layout's ``APPLY_ENTITY`` script, which bumps
the entity's version ``_n``: a worker whose cached copy predates the write fails its
compare-and-set and replays from its committed offsets with fresh states (the ordinary
fenced path, exactly once). Backfill compares-and-sets on the same version, and
re-reads and retries the entities a commit touched meanwhile. Every write touches one
key, so this works on a Redis Cluster too.

Idempotence: each entity hash written gets the field ``bf`` (in the same script);
entities that have it are skipped, so a backfill interrupted halfway can be run again.
A view whose definition changed under the same name has state written by the old
layout: backfill refuses it (`LayoutMismatchError`); give the view a new name.

Each entity's merged state is compacted at the committed watermark of its partitions,
as the worker would; then the view reads exactly as if the stream had seen every event.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
from redis.asyncio import Redis
from redis.exceptions import WatchError

from feature_service.aggregation.tiles import LayoutMismatchError, encode_field
from feature_service.definitions import FeatureView, Registry
from feature_service.events.parsing import column_from_arrow
from feature_service.offline.event_log import EventLog
from feature_service.online.redis_layout import (
    APPLY_ENTITY,
    VERSION_FIELD,
    entity_key,
    expiry_seconds,
    merge_state,
    offset_key,
    queue_apply_entity,
    view_layout,
    view_start_key,
)
from feature_service.plan import event_seq, view_plan

BACKFILLED_FIELD = "bf"
CHUNK_ENTITIES = 200
"""Entities per round trip (one pipeline of per-entity scripts)."""


@dataclass
class BackfillReport:
    view: str
    starts: dict[int, int] = field(default_factory=dict)  # partition -> stream start offset
    events: int = 0  # folded from the log
    late: int = 0
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
) -> tuple[dict[str, Any], int]:
    """The view's events below the stream's start offsets, late ones left out (columns:
    ts, seq, partition, entity, the layout's columns, passes); and how many were late."""
    plan = view_plan(view)
    needed = plan.needed_columns
    meta = ["event_ts", "_partition", "_offset", "_watermark"]
    table = log.scan(view.source, [*needed, *meta])  # each (partition, offset) once
    ts = np.asarray(table["event_ts"].to_numpy(), dtype=np.float64)
    part = np.asarray(table["_partition"].to_numpy(), dtype=np.int64)
    off = np.asarray(table["_offset"].to_numpy(), dtype=np.int64)
    wm = np.asarray(table["_watermark"].to_numpy(), dtype=np.float64)
    limit = np.zeros(int(part.max(initial=-1)) + 1, dtype=np.int64)
    for p, o in starts.items():
        if p < limit.size:
            limit[p] = o
    before = off < limit[part]
    late = plan.late(ts, wm)
    keep = np.flatnonzero(before & ~late)
    n_late = int((before & late).sum())
    taken = pa.array(keep)
    columns = {c: column_from_arrow(table[c].take(taken), view.source.schema[c]) for c in needed}
    events = {
        "ts": ts[keep],
        "seq": event_seq(off[keep], part[keep]),
        "partition": part[keep],
        "entity": np.asarray([str(e) for e in columns[view.entity.join_key]], dtype=object),
        "columns": {c: columns[c] for c in plan.layout.columns},
        "passes": plan.passes(columns, keep.size),
    }
    return events, n_late


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
    events, report.late = await asyncio.to_thread(log_events, view, log, report.starts)
    report.events = int(events["ts"].size)
    entities = np.unique(events["entity"]).tolist() if report.events else []
    layout = view_layout(view)
    order = np.argsort(events["entity"], kind="stable")
    sorted_entities = events["entity"][order]
    total = len(entities)
    for begin in range(0, total, chunk):
        names = entities[begin : begin + chunk]
        lo = int(np.searchsorted(sorted_entities, names[0], "left"))
        hi = int(np.searchsorted(sorted_entities, names[-1], "right"))
        idx = order[lo:hi]
        deltas = layout.batch_fields(
            events["ts"][idx],
            events["seq"][idx],
            {c: v[idx] for c, v in events["columns"].items()},
            events["passes"][idx],
            entities=events["entity"][idx],
        )
        compact_at = _entity_watermarks(events["entity"][idx], events["partition"][idx], watermarks)
        last = _entity_last(events["entity"][idx], events["ts"][idx])
        await _write_chunk(redis, view, deltas, compact_at, last, report)
        if progress is not None:
            progress(min(begin + chunk, total), total)
    return report


def _entity_watermarks(
    entities: npt.NDArray[Any], partitions: npt.NDArray[np.int64], watermarks: dict[int, float]
) -> dict[str, float]:
    out: dict[str, float] = {}
    for e, p in zip(entities.tolist(), partitions.tolist(), strict=True):
        wm = watermarks.get(p, -math.inf)
        if wm > out.get(e, -math.inf):
            out[e] = wm
    return out


def _entity_last(entities: npt.NDArray[Any], ts: npt.NDArray[np.float64]) -> dict[str, float]:
    out: dict[str, float] = {}
    for e, t in zip(entities.tolist(), ts.tolist(), strict=True):
        if t > out.get(e, -math.inf):
            out[e] = t
    return out


async def _write_chunk(
    redis: Redis,
    view: FeatureView,
    deltas: dict[Any, dict[str, Any]],
    compact_at: dict[str, float],
    last: dict[str, float],
    report: BackfillReport,
) -> None:
    layout = view_layout(view)
    expiry = expiry_seconds(view)
    pending = {str(e): delta for e, delta in deltas.items()}
    sha = await redis.script_load(APPLY_ENTITY)
    while pending:
        keys = {entity: entity_key(view.name, entity) for entity in pending}
        async with redis.pipeline(transaction=False) as pipe:
            for key in keys.values():
                pipe.hgetall(key)
            stored = [{_text(k): v for k, v in raw.items()} for raw in await pipe.execute()]
        writes: list[tuple[str, tuple[str, list[str], dict[str, str]]]] = []
        for (entity, delta), encoded in zip(pending.items(), stored, strict=True):
            if BACKFILLED_FIELD in encoded:
                report.skipped_entities += 1
                continue
            changed, deleted = _merged(layout, encoded, delta, compact_at, last, entity)
            version = encoded.get(VERSION_FIELD)
            expected = "" if version is None else _text(version)
            writes.append((entity, (expected, deleted, changed)))
        async with redis.pipeline(transaction=False) as pipe:
            for entity, (expected, deleted, changed) in writes:
                queue_apply_entity(pipe, sha, keys[entity], expected, expiry, deleted, changed)
            replies = await pipe.execute()
        retry = {}
        for (entity, _), version in zip(writes, replies, strict=True):
            if version:
                report.entities += 1
            else:  # a worker's commit changed the entity since we read it: read again
                retry[entity] = pending[entity]
        if retry:
            report.retries += 1
        pending = retry


def _merged(
    layout: Any,
    encoded: dict[str, Any],
    delta: dict[str, Any],
    compact_at: dict[str, float],
    last: dict[str, float],
    entity: str,
) -> tuple[dict[str, str], list[str]]:
    """Fields to set and delete: `delta` merged into the stored state, then compacted."""
    try:
        changed, deleted = merge_state(
            layout, encoded, delta, compact_at.get(entity, -math.inf), last[entity]
        )
    except LayoutMismatchError:
        raise LayoutMismatchError(
            f"the online state of entity {entity!r} was written by another definition of "
            "this view; give the changed view a new name and backfill that"
        ) from None
    changed[BACKFILLED_FIELD] = 1
    return {k: encode_field(v) for k, v in changed.items()}, deleted


def _text(name: bytes | str) -> str:
    return name.decode() if isinstance(name, bytes) else name
