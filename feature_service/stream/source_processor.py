"""Process fetched batches of one source topic: parse, dead-letter, log, aggregate, commit.

One batch of one partition, in order:

1. Skip records below the partition's committed offset (`fs:o:<topic>:<p>` in Redis).
   On the first batch of a partition, or when that key changed behind our back (another
   worker owned the partition meanwhile), drop cached state and delete offline files
   written past the committed offset by a run that died before committing.
2. Parse against the schema; refused records go to `<topic>.dlq` with the reason.
3. Watermarks: each event gets the partition's watermark just before it (the newest
   event time at lower offsets). For each view, an event is late when
   `event_ts < watermark_before - allowed_lateness`: counted, kept in the offline log,
   left out of online state. Training sets apply the same rule to the same numbers.
4. Write the batch to the offline log (whole files, named by partition and first
   offset, so a replay rewrites the same file).
5. Fold the batch into each view's tile state, one vectorised pass per view, then merge
   into each touched entity's state (cached in memory, read from Redis on a miss) and
   compact what fell out of retention.
6. Commit: under WATCH of the offset key, one MULTI/EXEC writes every changed field,
   the counters and the new `[next offset, watermark]`. If the key changed since step 1,
   EXEC fails, the cache is dropped and the batch is retried from the stored offset.

Exactly once, then: state and offset change together or not at all; every replay
starts from the stored offset with the stored watermark, so it recomputes the same
watermarks, lateness and tiles; offline files of uncommitted batches are removed before
a replay writes them again. Ordering ties (`first`/`last` at equal times) break on
`seq = offset * 4096 + partition`, which the offline log can recompute.

Scope: a view whose entity is not the topic's key (e.g. merchants on a topic keyed by
customer) is exact with one worker process; with several workers its entities would be
written from several partitions, which needs a repartition topic (not built yet).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from redis.exceptions import WatchError

from feature_service.aggregation.tiles import decode_field, encode_field
from feature_service.definitions import FeatureView, Registry, Source
from feature_service.offline.event_log import EventLog
from feature_service.online.redis_layout import (
    entity_key,
    expiry_seconds,
    offset_key,
    stats_key,
    view_layout,
)
from feature_service.stream.parsing import ParsedBatch, parse_records

log = logging.getLogger(__name__)

SEQ_PARTITION_SLOTS = 4096
# Entity states kept in memory per view; beyond this the least recently used are re-read.
CACHE_ENTITIES = 200_000


class FencedError(RuntimeError):
    """Another writer moved the partition's offset: our view of the state is stale."""


def event_seq(offsets: npt.NDArray[np.int64], partition: int) -> npt.NDArray[np.int64]:
    """The ordering tiebreak of events (see module docstring)."""
    return offsets * SEQ_PARTITION_SLOTS + partition


def watermarks_before(ts: npt.NDArray[np.float64], start: float) -> npt.NDArray[np.float64]:
    """For each event, the newest event time before it (`start` before the first).

    >>> watermarks_before(np.array([5.0, 3.0, 9.0]), 4.0).tolist()
    [4.0, 5.0, 5.0]
    """
    if ts.size == 0:
        return ts.copy()
    running = np.maximum.accumulate(np.concatenate(([start], ts)))
    return running[:-1]


def late_mask(
    view: FeatureView, ts: npt.NDArray[np.float64], wm_before: npt.NDArray[np.float64]
) -> npt.NDArray[np.bool_]:
    """Which events are late for `view` (same rule online and offline)."""
    with np.errstate(invalid="ignore"):
        return ts < wm_before - view.allowed_lateness_s


@dataclass
class _Partition:
    next_offset: int = 0
    watermark: float = float("-inf")
    raw: bytes | None = None  # the offset key's value as we last saw or wrote it
    loaded: bool = False


@dataclass
class BatchResult:
    """What one batch did (for metrics and tests)."""

    accepted: int = 0
    rejected: int = 0
    skipped: int = 0
    late: dict[str, int] = field(default_factory=dict)


class SourceProcessor:
    """Turns batches of one source's topic into offline files and online state."""

    def __init__(
        self,
        registry: Registry,
        source: Source,
        redis: aioredis.Redis,
        event_log: EventLog,
        producer: AIOKafkaProducer | None,
    ) -> None:
        self.source = source
        self.views = registry.views_of_source(source.name)
        self.redis = redis
        self.event_log = event_log
        self.producer = producer
        self.partitions: dict[int, _Partition] = {}
        self.cache: dict[str, OrderedDict[str, dict[str, Any]]] = {
            v.name: OrderedDict() for v in self.views
        }

    # ------------------------------------------------------------------ entry point

    async def handle(self, partition: int, records: Sequence[Any]) -> BatchResult:
        """Process one fetched batch (aiokafka records with .offset/.value) of `partition`."""
        started = time.perf_counter()
        state = await self._partition_state(partition)
        fresh = [(r.offset, r.value) for r in records if r.offset >= state.next_offset]
        result = BatchResult(skipped=len(records) - len(fresh))
        if not fresh:
            return result
        next_offset = fresh[-1][0] + 1
        batch = parse_records(self.source, fresh)
        result.accepted, result.rejected = len(batch), len(batch.rejected)
        await self._dead_letter(partition, batch)

        wm_before = watermarks_before(batch.ts, state.watermark)
        new_watermark = (
            max(state.watermark, float(batch.ts.max())) if len(batch) else state.watermark
        )
        if len(batch):
            frame = self._offline_frame(batch, partition, wm_before)
            await asyncio.to_thread(
                self.event_log.write_batch, self.source, partition, fresh[0][0], frame
            )
        writes: dict[str, tuple[dict[str, Any], list[str]]] = {}
        staged: list[tuple[str, str, dict[str, Any]]] = []
        for view in self.views:
            late = late_mask(view, batch.ts, wm_before)
            result.late[view.name] = int(late.sum())
            await self._fold_view(view, batch, ~late, partition, new_watermark, writes, staged)

        batch_ms = (time.perf_counter() - started) * 1000
        await self._commit(
            partition, state, next_offset, new_watermark, writes, result, batch, batch_ms
        )
        for view_name, entity, fields in staged:
            self._remember(view_name, entity, fields)
        return result

    # ------------------------------------------------------------------ steps

    async def _partition_state(self, partition: int) -> _Partition:
        raw = cast(bytes | None, await self.redis.get(offset_key(self.source.topic, partition)))
        state = self.partitions.get(partition)
        if state is not None and state.loaded and raw == state.raw:
            return state
        # First batch of this partition here, or someone else committed it meanwhile.
        state = _Partition(raw=raw, loaded=True)
        if raw is not None:
            next_offset, watermark = orjson.loads(raw)
            state.next_offset = int(next_offset)
            state.watermark = float("-inf") if watermark is None else float(watermark)
        for cache in self.cache.values():
            cache.clear()
        removed = await asyncio.to_thread(
            self.event_log.remove_uncommitted, self.source.name, partition, state.next_offset
        )
        if removed:
            log.warning(
                "%s[%d]: removed %d offline files of uncommitted batches",
                self.source.topic,
                partition,
                removed,
            )
        self.partitions[partition] = state
        return state

    async def _dead_letter(self, partition: int, batch: ParsedBatch) -> None:
        if not batch.rejected or self.producer is None:
            return
        sends = []
        for rejection in batch.rejected:
            body = {
                "source": self.source.name,
                "topic": self.source.topic,
                "partition": partition,
                "offset": rejection.offset,
                "reason": rejection.reason,
                "value": None
                if rejection.value is None
                else rejection.value.decode("utf-8", "replace"),
            }
            key = f"{self.source.topic}:{partition}:{rejection.offset}".encode()
            sends.append(
                await self.producer.send(self.source.dlq_topic, orjson.dumps(body), key=key)
            )
        await asyncio.gather(*sends)

    def _offline_frame(
        self, batch: ParsedBatch, partition: int, wm_before: npt.NDArray[np.float64]
    ) -> pd.DataFrame:
        data: dict[str, Any] = dict(batch.columns)
        data["event_ts"] = batch.ts
        data["_partition"] = np.full(len(batch), partition, dtype=np.int32)
        data["_offset"] = batch.offsets
        data["_watermark"] = wm_before
        return pd.DataFrame(data)

    async def _fold_view(
        self,
        view: FeatureView,
        batch: ParsedBatch,
        accepted: npt.NDArray[np.bool_],
        partition: int,
        watermark: float,
        writes: dict[str, tuple[dict[str, Any], list[str]]],
        staged: list[tuple[str, str, dict[str, Any]]],
    ) -> None:
        layout = view_layout(view)
        n = int(accepted.sum())
        if n == 0:
            return
        columns = {c: batch.columns[c][accepted] for c in layout.columns}
        passes = np.ones((n, len(view.features)), dtype=np.bool_)
        where_cache: dict[str, npt.NDArray[np.bool_]] = {}
        for i, feature in enumerate(view.features):
            if feature.where is None:
                continue
            mask = where_cache.get(feature.where.text)
            if mask is None:
                needed = {c: batch.columns[c][accepted] for c in feature.where.columns}
                mask = where_cache[feature.where.text] = feature.where.evaluate_columns(needed, n)
            passes[:, i] = mask
        entities = batch.columns[view.entity.join_key][accepted]
        deltas = layout.batch_fields(
            batch.ts[accepted],
            event_seq(batch.offsets[accepted], partition),
            columns,
            passes,
            entities=entities,
        )
        stored = await self._load(view, [str(e) for e in deltas])
        for entity, delta in deltas.items():
            entity = str(entity)
            current = stored[entity]
            merged = dict(current)
            changed = layout.merge_fields(current, delta)
            merged.update(changed)
            plan = layout.plan_compaction(list(merged), watermark)
            updates = layout.apply_compaction(plan, {k: merged.get(k) for k in plan.read})
            for name in plan.delete:
                merged.pop(name, None)
                changed.pop(name, None)
            merged.update(updates)
            changed.update(updates)
            writes[entity_key(view.name, entity)] = (changed, list(plan.delete))
            staged.append((view.name, entity, merged))

    async def _load(self, view: FeatureView, entities: list[str]) -> dict[str, dict[str, Any]]:
        cache = self.cache[view.name]
        found: dict[str, dict[str, Any]] = {}
        missing = []
        for entity in entities:
            fields = cache.get(entity)
            if fields is None:
                missing.append(entity)
            else:
                cache.move_to_end(entity)
                found[entity] = fields
        if missing:
            async with self.redis.pipeline(transaction=False) as pipe:
                for entity in missing:
                    pipe.hgetall(entity_key(view.name, entity))
                replies = await pipe.execute()
            for entity, raw in zip(missing, replies, strict=True):
                found[entity] = {k.decode(): decode_field(v) for k, v in raw.items()}
        return found

    def _remember(self, view_name: str, entity: str, fields: dict[str, Any]) -> None:
        cache = self.cache[view_name]
        cache[entity] = fields
        cache.move_to_end(entity)
        while len(cache) > CACHE_ENTITIES:
            cache.popitem(last=False)

    async def _commit(
        self,
        partition: int,
        state: _Partition,
        next_offset: int,
        watermark: float,
        writes: dict[str, tuple[dict[str, Any], list[str]]],
        result: BatchResult,
        batch: ParsedBatch,
        batch_ms: float,
    ) -> None:
        okey = offset_key(self.source.topic, partition)
        new_raw = orjson.dumps([next_offset, None if watermark == float("-inf") else watermark])
        expiries = {v.name: expiry_seconds(v) for v in self.views}
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                await pipe.watch(okey)
                if await pipe.get(okey) != state.raw:
                    raise FencedError(f"{okey} moved: another worker committed this partition")
                pipe.multi()
                for key, (changed, deleted) in writes.items():
                    if deleted:
                        pipe.hdel(key, *deleted)
                    if changed:
                        pipe.hset(key, mapping={k: encode_field(v) for k, v in changed.items()})
                    view_name = key.split(":", 3)[2]
                    expiry = expiries.get(view_name)
                    if expiry is not None:
                        pipe.expire(key, expiry)
                pipe.set(okey, new_raw)
                skey = stats_key(self.source.name)
                pipe.hincrby(skey, "events", result.accepted)
                pipe.hincrby(skey, "dlq", result.rejected)
                pipe.hincrby(skey, "batches", 1)
                for view_name, count in result.late.items():
                    if count:
                        pipe.hincrby(skey, f"late:{view_name}", count)
                pipe.hset(skey, mapping={"last_batch_ms": f"{batch_ms:.3f}"})
                if len(batch):
                    pipe.hset(skey, mapping={f"newest_event_ts:{partition}": repr(watermark)})
                await pipe.execute()
        except (WatchError, FencedError):
            self.partitions.pop(partition, None)
            for cache in self.cache.values():
                cache.clear()
            raise
        state.next_offset, state.watermark, state.raw = next_offset, watermark, new_raw
