"""Process fetched batches of one source topic: parse, dead-letter, log, aggregate, commit.

`handle` (per fetched batch of one partition):

1. Skip records below the partition's position. On the first batch of a partition, or
   when its offset key (`fs:o:{<source>}:<p>` in Redis) changed behind our back
   (another worker owned it meanwhile), drop cached state and re-read from the
   committed offset if Kafka's position is past it.
2. Parse against the schema (`plan.SourcePlan.parse`; an Avro, Protobuf or JSON
   Schema source's records decoded first, `stream.source_decoder`); refused records,
   and events no view of the source can take (every view's join key null or empty),
   go to `<topic>.dlq` with the reason.
3. Watermarks: each event gets the partition's watermark just before it (the newest
   event time at lower offsets). For each view, an event without the view's join key
   is skipped (`ViewPlan.takes`: counted per view as `skipped:<view>`, kept in the
   offline log for the other views), and an event is late by the view's plan
   (`feature_service.plan`: `event_ts < watermark_before - allowed_lateness`): counted,
   kept in the offline log, left out of online state. Training sets apply the same
   plan to the same numbers.
4. Keep the batch pending.

`flush` (when `flush_events` are pending or the oldest is `flush_interval_s` old, and
before partitions are revoked), for all pending batches of all partitions at once:

5. Write each partition's pending events to the offline log (whole files, named by
   partition and offset range; a replay of a range rewrites the same file, and no
   writer deletes or replaces another range, see `offline.event_log`), in a thread,
   while 6 and 7 run; 8 waits for the files.
6. Read the state of every entity the events touch (cached in memory, else one MGET
   per chunk, `redis_layout.read_states`), leave out the events a state already holds
   (offset below its mark for `<topic>:<partition>`, see 8), and write each view's
   states anew with `aggregation.state.write`: decode, merge the new events into the
   retained ones, compact what fell out of retention, encode, for all touched entities
   at once. Grouping many fetched batches into one commit is what makes an entity's
   state be written once for many of its events.
7. Apply: compare-and-set each changed entity's value (`redis_layout.apply_states`:
   one `APPLY_ENTITIES` script for each chunk of entities on a standalone Redis, one per
   entity on a Cluster, where a script over many entities cannot run: their keys live
   in different slots). A value carries each contributing partition's mark = the
   partition's new position and a new version, and is written only if the stored
   version is still the one read in 6.
8. Commit: one `COMMIT_OFFSETS` script sets each partition's `[next offset, watermark]`
   and the counters, only if every offset key still holds what this worker last saw.
   The same script records, per view and partition, the first offset the stream
   folded (`fs:vstart:{<source>}:<view>`, HSETNX), the boundary `stream.backfill`
   folds the log below. The offset, stats and start keys of a source share one hash
   slot (`{<source>}`).
   If a version (7) or an offset key (8) moved, another writer got there (a zombie or a
   second owner): pending work and caches are dropped and each partition is re-read
   from its stored offset when its next batch arrives (a `Rewind`).

Exactly once, then. The offset key only moves after every entity write of the range
succeeded, so a state always holds all of its events below the committed offset. A
flush that dies (SIGKILL, fenced, Redis gone) between 7 and 8 leaves some entities
ahead of the offset; the replay starts from the stored offset with the stored
watermark, so it recomputes the same watermarks and lateness, and step 6 leaves out,
per entity, exactly the events its state already holds (its `<topic>:<p>` mark says how
far, and is written atomically with the state it describes), whatever batch boundaries the
replay takes. Two writers cannot both apply a stale read: the version check refuses
the second, which then re-reads (a backfill writing an entity this worker has cached
fences the worker's next flush the same way). Offline files are never deleted or
replaced by another range, so a zombie cannot wipe committed events; the log reads each
`(partition, offset)` once. Counters move with the offsets, so they count each
event once. Ordering ties (`first`/`last` at equal times) break on
`seq` (`plan.event_seq`), which the offline log can recompute; lateness and `where`
are the view's plan's (`feature_service.plan`), as in every reader.

Several workers and views not keyed by the topic's key (merchants on a topic keyed by
customer): a merchant's events come from every partition, so several workers write
the same merchant state. Each keeps its own partitions' `<topic>:<p>` marks in it, so neither
can count the other's events, and a write that loses the race (version moved) is redone for
that entity alone: read again, fold again, apply again (`_apply_view`), while the
entities already applied stay applied. No repartition topic, no extra hop; the price is
a retry per collision, counted in `fs:stats` as `entity_retries`
(tests/integration/test_foreign_key_views.py). Lateness stays each source partition's
own, as in the offline log.
A view of a composite key (`join_keys: [customer_id, merchant_id]`, ids by
`keys.EntityKey`) on a topic keyed by one of its columns has each entity in one
partition, as the topic key's own view; keyed by neither, it is the case above.
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
from redis.exceptions import NoScriptError

from feature_service.aggregation.state import Events, States, decode, version_of, write
from feature_service.definitions import FeatureView, Registry, Source
from feature_service.events.parsing import ParsedBatch
from feature_service.keys import key_text
from feature_service.offline.event_log import EventLog
from feature_service.online.redis_layout import (
    APPLY_ENTITIES,
    COMMIT_OFFSETS,
    DELETE_IF_VERSION,
    StateWrite,
    applied_mark,
    apply_states,
    entity_key,
    expiry_seconds,
    offset_key,
    read_states,
    stats_key,
    view_start_key,
)
from feature_service.plan import event_seq, source_plan, view_plan
from feature_service.stream.faust_batches import Rewind
from feature_service.stream.source_decoder import SourceDecoder

log = logging.getLogger(__name__)

# How often an idle worker checks that Redis still holds its partitions' offsets.
IDLE_CHECK_S = 2.0
# How many flush intervals a worker that is behind may wait for a full flush.
CATCH_UP_WAIT = 10
# How often an entity written by someone else meanwhile is read and folded again before
# the whole flush is fenced (see `SourceProcessor._apply_view`).
ENTITY_RETRIES = 20


class FencedError(RuntimeError):
    """Another writer moved the partition's offset: our view of the state is stale.

    `rewind`: the partitions whose pending work was dropped, and the offset to read
    each again from (no later than what Redis holds); the next batch then finds where
    Redis really is. Without it a fenced worker that already fetched everything would
    wait for new events forever.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.rewind: dict[int, int] = {}


class StoreLostError(FencedError):
    """A partition's offset key is gone or went back: Redis lost data (a restart without
    persistence, FLUSHALL, a failover to a lagging replica). The partition is rebuilt by
    replaying it from what Redis still holds."""


def watermarks_before(ts: npt.NDArray[np.float64], start: float) -> npt.NDArray[np.float64]:
    """For each event, the newest event time before it (`start` before the first).

    >>> watermarks_before(np.array([5.0, 3.0, 9.0]), 4.0).tolist()
    [4.0, 5.0, 5.0]
    """
    if ts.size == 0:
        return ts.copy()
    running = np.maximum.accumulate(np.concatenate(([start], ts)))
    return running[:-1]


@dataclass
class _Partition:
    """What Redis says about a partition, and what is pending for it here."""

    next_offset: int = 0  # committed
    raw: bytes | None = None  # the offset key's value as we last saw or wrote it
    position: int = 0  # next offset to accept (committed + pending)
    position_watermark: float = float("-inf")
    pending: list[ParsedBatch] = field(default_factory=list)
    pending_wm: list[npt.NDArray[np.float64]] = field(default_factory=list)
    first_pending: int | None = None
    rejected: int = 0
    rewound: bool = False


@dataclass
class FlushResult:
    """What one flush did (for metrics and tests)."""

    accepted: int = 0
    rejected: int = 0
    late: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # per view: its join key absent
    durable: dict[int, int] = field(default_factory=dict)
    retried: int = 0  # entity writes that lost a race and were redone


class SourceProcessor:
    """Turns batches of one source's topic into offline files and online state."""

    def __init__(
        self,
        registry: Registry,
        source: Source,
        redis: aioredis.Redis,
        event_log: EventLog,
        producer: AIOKafkaProducer | None,
        flush_events: int = 200_000,
        flush_interval_s: float = 0.5,
        cache_entities: int = 20_000,
        head_events: int | None = None,
    ) -> None:
        self.source = source
        self.plan = source_plan(registry, source.name)
        self.views = list(self.plan.views)
        self.decoder = SourceDecoder(source) if source.format is not None else None
        self.redis = redis
        self.event_log = event_log
        self.producer = producer
        self.flush_events = flush_events
        self.flush_interval_s = flush_interval_s
        self.cache_entities = cache_entities
        self.head_events = head_events  # None: `aggregation.state`'s default budget
        self.partitions: dict[int, _Partition] = {}
        self.cache: dict[str, OrderedDict[str, bytes]] = {v.name: OrderedDict() for v in self.views}
        self._pending_events = 0
        self._pending_since: float | None = None
        self._script_shas: tuple[str, str, str] | None = None
        # The committed next offset of each partition as this worker last saw or wrote
        # it: an offset key found below it (or gone) means Redis lost data.
        self._known_offsets: dict[int, int] = {}
        self.store_resets = 0  # partitions rebuilt after Redis lost data (not yet counted)
        self._last_idle_check = time.monotonic()
        # Per partition without state here, the offset key's value it was last read
        # again from (`check_idle`); a batch makes the partition's state, see there.
        self._synced: dict[int, bytes | None] = {}

    # ------------------------------------------------------------------ per fetched batch

    async def handle(self, partition: int, records: Sequence[Any]) -> None:
        """Take one fetched batch (records with .offset/.value) of `partition`."""
        state = await self._partition_state(partition)
        if records and records[0].offset > state.position:
            if not state.rewound:
                state.rewound = True  # Kafka is past our state: read from where the state is
                raise Rewind(state.position)
            # Rewound, yet the broker starts later: those events are gone from the topic.
            log.error(
                "%s[%d]: offsets %d..%d are no longer on the broker, so online state "
                "cannot replay them; `feature-service backfill` folds them from the "
                "offline log",
                self.source.topic,
                partition,
                state.position,
                records[0].offset - 1,
            )
            state.next_offset = state.position = records[0].offset
        kept = [r for r in records if r.offset >= state.position]
        if not kept:
            return
        fresh = [(r.offset, r.value) for r in kept]
        written = [_record_time(r) for r in kept]
        if self.decoder is not None:  # Avro, Protobuf, JSON Schema: decoded, then parsed
            batch = await self.decoder.parse(self.plan, fresh, written)
        else:
            batch = self.plan.parse(fresh, written)
        await self._dead_letter(partition, batch)
        wm_before = watermarks_before(batch.ts, state.position_watermark)
        if len(batch):
            state.position_watermark = max(state.position_watermark, float(batch.ts.max()))
        if state.first_pending is None:
            state.first_pending = fresh[0][0]
        state.position = fresh[-1][0] + 1
        state.pending.append(batch)
        state.pending_wm.append(wm_before)
        state.rejected += len(batch.rejected)
        self._pending_events += len(fresh)
        if self._pending_since is None:
            self._pending_since = time.monotonic()

    async def check_idle(self, assigned: set[int]) -> None:
        """Every `IDLE_CHECK_S` while nothing is pending: do the offset keys of the
        `assigned` partitions still say what this worker last saw or committed? If
        Redis lost them (or another worker moved them), raise `FencedError` with those
        partitions to re-read: a worker that already fetched everything would otherwise
        never notice a Redis that restarted empty, and online state would stay short.

        A partition assigned here that has not yet brought a batch is read once from
        the offset Redis holds: Kafka's committed offset may be past it (Redis lost
        data before this worker got the partition), and then no batch would ever come
        to reveal it."""
        now = time.monotonic()
        if now - self._last_idle_check < IDLE_CHECK_S or self._pending_since is not None:
            return
        self._last_idle_check = now
        checked = sorted(assigned)
        if not checked:
            return
        rewind: dict[int, int] = {}
        lost = False
        for p, raw in zip(checked, await self._read_offsets(checked), strict=True):
            state = self.partitions.get(p)
            stored = _stored_offset(raw)
            if state is not None and state.raw is not None:
                moved = raw != state.raw
            else:  # gone or behind what this worker committed: lost
                moved = stored < self._known_offsets.get(p, 0)
            lost |= moved
            if moved or (state is None and self._synced.get(p, b"?") != raw):
                # read again from where Redis is now, so a batch comes and says so
                rewind[p] = max(stored, 0)
                self._synced[p] = raw
        if not rewind:
            return
        if lost:
            self._drop_pending()
        fenced = FencedError(
            f"{self.source.topic}: reading partitions {sorted(rewind)} again from the "
            "offsets Redis holds"
        )
        fenced.rewind = rewind
        raise fenced

    def flush_due(self, behind: int = 0) -> bool:
        """Whether pending work should be made durable now: `flush_events` are pending,
        or the oldest has waited `flush_interval_s`. A worker `behind` by enough events
        to fill a whole flush (catching up: a backlog, a restart) waits for the full
        flush instead, up to `CATCH_UP_WAIT` intervals: fewer, bigger flushes write
        each entity once for more of its events, and latency does not matter for
        events that are already that late."""
        if self._pending_since is None:
            return False
        if self._pending_events >= self.flush_events:
            return True
        waited = time.monotonic() - self._pending_since
        if behind >= self.flush_events - self._pending_events:
            return waited >= CATCH_UP_WAIT * self.flush_interval_s
        return waited >= self.flush_interval_s

    async def _partition_state(self, partition: int) -> _Partition:
        state = self.partitions.get(partition)
        if state is not None and state.first_pending is not None:
            return state  # pending work: the commit script compares the key
        raw = cast(bytes | None, await self.redis.get(offset_key(self.source.name, partition)))
        if state is not None and raw == state.raw:
            return state
        # First batch of this partition here, or someone else committed it meanwhile.
        state = _Partition(raw=raw)
        if raw is not None:
            next_offset, watermark = orjson.loads(raw)
            state.next_offset = state.position = int(next_offset)
            state.position_watermark = float("-inf") if watermark is None else float(watermark)
        known = self._known_offsets.get(partition, 0)
        if state.next_offset < known:
            self.store_resets += 1
            log.error(
                "%s[%d]: Redis holds offset %d, this worker committed up to %d: Redis "
                "lost data; rebuilding the partition's online state from offset %d",
                self.source.topic,
                partition,
                state.next_offset,
                known,
                state.next_offset,
            )
        self._known_offsets[partition] = state.next_offset
        for cache in self.cache.values():
            cache.clear()
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
            # Keyed by position, so a consumer can drop the copies a replay sends again.
            key = f"{self.source.topic}:{partition}:{rejection.offset}".encode()
            sends.append(
                await self.producer.send(self.source.dlq_topic, orjson.dumps(body), key=key)
            )
        await asyncio.gather(*sends)

    # ------------------------------------------------------------------ flush

    async def flush(self) -> FlushResult:
        """Make every pending batch durable: offline files, then state + offsets at once."""
        started = time.perf_counter()
        parts = {p: s for p, s in self.partitions.items() if s.first_pending is not None}
        result = FlushResult()
        if not parts:
            return result
        # Were the offsets lost or moved since we read them? A worker paused past its
        # session (a zombie) stops here, and writing on top of a Redis that lost its
        # data would mark events applied that its state does not hold (the replay
        # would then skip them). The entity compare-and-set and the commit check again.
        try:
            await self._check_offsets(parts)
        except FencedError:
            self._drop_pending()
            raise
        merged_batches: dict[int, tuple[ParsedBatch, npt.NDArray[np.float64]]] = {}
        files: list[tuple[int, int, dict[str, Any]]] = []
        for p, state in parts.items():
            batch = _concat(state.pending)
            wm_before = np.concatenate(state.pending_wm) if state.pending_wm else np.empty(0)
            merged_batches[p] = (batch, wm_before)
            result.accepted += len(batch)
            result.rejected += state.rejected
            if len(batch):
                assert state.first_pending is not None
                files.append((p, state.first_pending, self._offline_frame(batch, p, wm_before)))
        # The offline files are written in a thread while the views are folded (Parquet
        # encoding releases the GIL); both are done before the offsets move (step 8).
        offline = asyncio.ensure_future(asyncio.to_thread(self._write_offline, files))
        # which views take which events: decided once per flush (`plan.ViewPlan.takes`)
        takers = {p: self.plan.takers(batch.columns) for p, (batch, _) in merged_batches.items()}
        staged: list[tuple[str, str, bytes]] = []
        try:
            try:
                for i, view in enumerate(self.views):
                    taken = {p: takes[:, i] for p, takes in takers.items()}
                    staged += await self._apply_view(view, merged_batches, taken, parts, result)
            finally:
                await asyncio.shield(offline)  # never commit (or give up) before the files
            await self._commit(parts, result, (time.perf_counter() - started) * 1000)
        except FencedError as fenced:
            if isinstance(fenced, StoreLostError):
                await self._undo(staged)
            if not fenced.rewind:  # fenced by an entity that kept changing
                fenced.rewind = {p: state.next_offset for p, state in parts.items()}
            self._drop_pending()
            raise
        for view_name, entity, value in staged:
            self._remember(view_name, entity, value)
        for p, state in parts.items():
            state.next_offset = self._known_offsets[p] = state.position
            state.pending, state.pending_wm = [], []
            state.first_pending, state.rejected = None, 0
            result.durable[p] = state.next_offset
        self._pending_events = 0
        self._pending_since = None
        return result

    async def _read_offsets(self, partitions: Sequence[int]) -> list[bytes | None]:
        """The offset keys' values of `partitions` (one pipeline; None where absent)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in partitions:
                pipe.get(offset_key(self.source.name, p))
            return cast(list[bytes | None], await pipe.execute())

    async def _check_offsets(self, parts: dict[int, _Partition]) -> None:
        """Raise `StoreLostError` if an offset key is gone or behind what this worker
        committed, `FencedError` if another worker moved one; else nothing."""
        self._raise_if_moved(parts, await self._read_offsets(list(parts)))

    def _raise_if_moved(self, parts: dict[int, _Partition], current: list[Any]) -> None:
        """Raise if an offset key of `parts` is not what this worker last saw; the
        error's `rewind` re-reads each partition from no later than Redis's offset (a
        batch must arrive for the partition to find out where its state is)."""
        lost: list[str] = []
        moved = False
        rewind: dict[int, int] = {}
        for (p, state), raw in zip(parts.items(), current, strict=True):
            stored = _stored_offset(raw)
            rewind[p] = min(state.next_offset, max(stored, 0))
            if raw == state.raw:
                continue
            moved = True
            if stored < self._known_offsets.get(p, 0) or (raw is None and state.raw):
                what = "gone" if raw is None else f"back at {stored}"
                lost.append(f"[{p}] {what} (committed {self._known_offsets.get(p, 0)})")
        if not moved:
            return
        error = (
            StoreLostError(
                f"{self.source.topic}: offset keys {', '.join(lost)}: Redis lost data; rebuilding"
            )
            if lost
            else FencedError(f"an offset of {self.source.topic} moved: another worker owns it")
        )
        error.rewind = rewind
        raise error

    async def _undo(self, staged: list[tuple[str, str, bytes]]) -> None:
        """Delete the entity states this flush wrote into a Redis that lost its data, if
        nobody wrote them since: they hold only this flush's events, yet mark them
        applied, and the rebuild must fold every event of those entities again."""
        if not staged:
            return
        _, undo_sha, _ = await self._scripts()
        async with self.redis.pipeline(transaction=False) as pipe:
            for view_name, entity, value in staged:
                key = entity_key(view_name, entity)
                pipe.execute_command("EVALSHA", undo_sha, 1, key, version_of(value))
            await pipe.execute(raise_on_error=False)

    def _drop_pending(self) -> None:
        """Forget pending work and caches; partitions are re-read from their stored offsets."""
        self.partitions.clear()
        for cache in self.cache.values():
            cache.clear()
        self._pending_events = 0
        self._pending_since = None

    def _write_offline(self, files: list[tuple[int, int, dict[str, Any]]]) -> None:
        for p, first_offset, frame in files:
            self.event_log.write_batch(self.source, p, first_offset, frame)

    def _offline_frame(
        self, batch: ParsedBatch, partition: int, wm_before: npt.NDArray[np.float64]
    ) -> dict[str, Any]:
        data: dict[str, Any] = dict(batch.columns)
        data["event_ts"] = batch.ts
        data["_partition"] = np.full(len(batch), partition, dtype=np.int32)
        data["_offset"] = batch.offsets
        data["_watermark"] = wm_before
        return data

    def _fold_view(
        self,
        view: FeatureView,
        batches: dict[int, tuple[ParsedBatch, npt.NDArray[np.float64]]],
        taken: dict[int, npt.NDArray[np.bool_]],
        parts: dict[int, _Partition],
        entities: list[str],
        states: States,
    ) -> tuple[
        Events, npt.NDArray[np.float64], npt.NDArray[np.float64], list[dict[str, int]], int, int
    ]:
        """The pending events of `view` to add to the states of `entities` (one numpy
        pass), the watermark each entity compacts at (the newest of the partitions its
        events came from), its newest event time, the offset marks to set, how many
        events were late and how many the view skipped (`taken`: per partition, the
        events with its join key). Events a stored state already holds (offset below
        its mark for the partition) are left out."""
        plan = view_plan(view)
        index = pd.Index(entities)
        m = len(entities)
        watermark = np.full(m, -np.inf)
        last = np.full(m, -np.inf)
        marks: list[dict[str, int]] = [{} for _ in range(m)]
        pieces: list[Events] = []
        late_total = skipped_total = 0
        for p, (batch, wm_before) in batches.items():
            takes = taken[p]
            skipped_total += int(len(batch) - takes.sum())
            accepted = ~plan.late(batch.ts, wm_before) & takes
            late_total += int(takes.sum() - accepted.sum())
            code = _codes(index, view, batch, takes)
            accepted &= code >= 0  # (a retry of some entities: only theirs)
            applied = _already_applied(view, p, batch, code, states)
            if applied is not None:
                accepted &= ~applied
            if not accepted.any():
                continue
            idx = np.flatnonzero(accepted)
            code = code[idx]
            ts = batch.ts[idx]
            np.maximum.at(watermark, code, parts[p].position_watermark)
            np.maximum.at(last, code, ts)
            mark = applied_mark(view.source.topic, p)
            for e in np.unique(code).tolist():
                marks[e][mark] = parts[p].position
            columns = {c: batch.columns[c][idx] for c in plan.needed_columns}
            pieces.append(
                Events.of(
                    plan.layout,
                    code,
                    ts,
                    event_seq(batch.offsets[idx], p),
                    columns,
                    plan.passes(columns, idx.size),
                )
            )
        last[~np.isfinite(last)] = np.nan
        new = Events.concat(plan.layout, pieces)
        return new, watermark, last, marks, late_total, skipped_total

    async def _load(self, view: FeatureView, entities: list[str]) -> list[bytes | None]:
        cache = self.cache[view.name]
        found: list[bytes | None] = []
        missing: list[int] = []
        for i, entity in enumerate(entities):
            value = cache.get(entity)
            if value is None:
                missing.append(i)
            else:
                cache.move_to_end(entity)
            found.append(value)
        if missing:
            keys = [entity_key(view.name, entities[i]) for i in missing]
            replies = await read_states(self.redis, keys)
            for i, raw in zip(missing, replies, strict=True):
                found[i] = raw
        return found

    def _remember(self, view_name: str, entity: str, value: bytes) -> None:
        cache = self.cache[view_name]
        cache[entity] = value
        cache.move_to_end(entity)
        while len(cache) > self.cache_entities:
            cache.popitem(last=False)

    async def _scripts(self) -> tuple[str, str, str]:
        if self._script_shas is None:
            commit_sha = await self.redis.script_load(COMMIT_OFFSETS)
            undo_sha = await self.redis.script_load(DELETE_IF_VERSION)
            apply_sha = await self.redis.script_load(APPLY_ENTITIES)
            self._script_shas = (str(commit_sha), str(undo_sha), str(apply_sha))
        return self._script_shas

    async def _apply_view(
        self,
        view: FeatureView,
        batches: dict[int, tuple[ParsedBatch, npt.NDArray[np.float64]]],
        taken: dict[int, npt.NDArray[np.bool_]],
        parts: dict[int, _Partition],
        result: FlushResult,
    ) -> list[tuple[str, str, bytes]]:
        """Fold, merge and apply the pending events of `view` (steps 6 and 7); return the
        new states to cache.

        An entity whose version moved since it was read (another worker wrote it: with
        several workers, a view not keyed by the topic's key has entities fed by
        partitions of different workers; or a backfill did) is read again and its events
        folded again, up to `ENTITY_RETRIES` times, without touching the entities that
        were applied: their offset marks now leave the applied events out. Only an
        entity that keeps losing the race fences the whole flush.
        """
        layout = view_plan(view).layout
        expiry = expiry_seconds(view)
        entities = _entities(view, batches, taken)
        staged: list[tuple[str, str, bytes]] = []
        for attempt in range(ENTITY_RETRIES):
            stored = await self._load(view, entities)
            states = decode(layout, stored, coded=True)
            new, watermark, last, marks, late, skipped = self._fold_view(
                view, batches, taken, parts, entities, states
            )
            if attempt == 0:
                result.late[view.name] = late
                result.skipped[view.name] = skipped
            values = write(layout, states, new, watermark, last, marks, budget=self.head_events)
            writes = [
                StateWrite(entity_key(view.name, e), version_of(old), value)
                for e, old, value in zip(entities, stored, values, strict=True)
            ]
            lost = await self._apply(writes, expiry)
            staged += [
                (view.name, e, value)
                for i, (e, value) in enumerate(zip(entities, values, strict=True))
                if i not in lost
            ]
            if not lost:
                return staged
            result.retried += len(lost)
            entities = [entities[i] for i in sorted(lost)]
            for entity in entities:
                self.cache[view.name].pop(entity, None)
        raise FencedError(
            f"{len(entities)} entities of {view.name} kept changing while being written"
        )

    async def _apply(self, writes: list[StateWrite], expiry: int | None) -> set[int]:
        """Apply entity writes (`redis_layout.apply_states`: compare-and-set on each
        version, one pipeline); return the indexes of those whose version had moved
        (nothing written for them)."""
        _, _, apply_sha = await self._scripts()
        try:
            return await apply_states(self.redis, apply_sha, writes, expiry)
        except NoScriptError:
            self._script_shas = None  # Redis restarted: load the scripts again
            raise

    async def _commit(
        self, parts: dict[int, _Partition], result: FlushResult, flush_ms: float
    ) -> None:
        """Move the offsets and counters at once, if no offset key moved (step 8)."""
        commit_sha, _, _ = await self._scripts()
        keys = [offset_key(self.source.name, p) for p in parts]
        new_raw = {
            p: orjson.dumps(
                [
                    s.position,
                    None if s.position_watermark == float("-inf") else s.position_watermark,
                ]
            )
            for p, s in parts.items()
        }
        stats: list[Any] = [
            "i", "events", result.accepted,
            "i", "dlq", result.rejected,
            "i", "flushes", 1,
            "s", "last_flush_ms", f"{flush_ms:.3f}",
            "s", "last_commit_ts", repr(time.time()),
        ]  # fmt: skip
        for view_name, count in result.late.items():
            if count:
                stats += ["i", f"late:{view_name}", count]
        for view_name, count in result.skipped.items():
            if count:
                stats += ["i", f"skipped:{view_name}", count]
        if result.retried:
            stats += ["i", "entity_retries", result.retried]
        if self.store_resets:
            stats += ["i", "store_resets", self.store_resets]
        for p, s in parts.items():
            if s.position_watermark != float("-inf"):
                stats += ["s", f"newest_event_ts:{p}", repr(s.position_watermark)]
        # Where the stream took over each view, per partition (stream/backfill.py): the
        # first offset of the first commit that folded the view, kept by HSETNX.
        starts = [view_start_key(view.name, self.source.name) for view in self.views]
        for i in range(len(starts)):
            for p, s in parts.items():
                stats += [f"n{i + 1}", str(p), s.next_offset]
        committed = await self.redis.evalsha(
            commit_sha,
            len(keys) + 1 + len(starts),
            *keys,
            stats_key(self.source.name),
            *starts,
            len(keys),
            *(parts[p].raw or b"" for p in parts),
            *(new_raw[p] for p in parts),
            *stats,
        )
        if not committed:
            await self._check_offsets(parts)  # Redis lost data, or another worker moved one
            raise FencedError(f"an offset of {self.source.topic} moved: another worker owns it")
        for p in parts:
            parts[p].raw = new_raw[p]
        self.store_resets = 0


def _stored_offset(raw: bytes | None) -> int:
    """The next offset an offset key's value holds; -1 for an absent key."""
    return -1 if raw is None else int(orjson.loads(raw)[0])


def _record_time(record: Any) -> float | None:
    """The time a record was written to its topic (epoch seconds), if the broker says."""
    stamp = getattr(record, "timestamp", None)
    if not isinstance(stamp, int) or stamp <= 0:
        return None
    return stamp / 1000


def _codes(
    index: pd.Index, view: FeatureView, batch: ParsedBatch, taken: npt.NDArray[np.bool_]
) -> Any:
    """Each event's position in `index` by its entity id (-1: not there, or not `taken`)."""
    key = view.entity.key
    columns = [batch.columns[c] for c in key.join_keys]
    if taken.all():
        return np.asarray(index.get_indexer(key.ids(columns)), dtype=np.int64)
    code = np.full(len(batch), -1, dtype=np.int64)
    code[taken] = index.get_indexer(key.ids([c[taken] for c in columns]))
    return code


def _entities(
    view: FeatureView,
    batches: dict[int, tuple[ParsedBatch, npt.NDArray[np.float64]]],
    taken: dict[int, npt.NDArray[np.bool_]],
) -> list[str]:
    """The distinct entities of `view` in the pending batches (events it takes only)."""
    key = view.entity.key
    if not key.composite:  # the values' texts once per distinct value (a typed column)
        (column,) = key.join_keys
        values = [batch.columns[column][taken[p]] for p, (batch, _) in batches.items()]
        return [key_text(e) for e in pd.unique(np.concatenate(values))] if values else []
    ids = [
        key.ids([batch.columns[c][taken[p]] for c in key.join_keys])
        for p, (batch, _) in batches.items()
    ]
    return [str(e) for e in pd.unique(np.concatenate(ids))] if ids else []


def _already_applied(
    view: FeatureView,
    partition: int,
    batch: ParsedBatch,
    code: npt.NDArray[np.int64],
    states: States,
) -> npt.NDArray[np.bool_] | None:
    """Which events of `batch` (of entities `code` in `states`) their entity's stored
    state already holds, if any does.

    A state holds every event of the entity from `partition` below its mark for the
    partition. That is past the batch's first offset only after a flush applied this
    entity but died (or was fenced) before committing the partition's offset; then the
    replay must not add those events again. None (the usual case): nothing to leave out.
    """
    if not len(batch):
        return None
    first = int(batch.offsets[0])
    name = applied_mark(view.source.topic, partition)
    below = np.full(len(states.metas) + 1, -1, dtype=np.int64)  # last slot: code -1
    found = False
    for i, meta in enumerate(states.metas):
        if meta is not None:
            mark = meta.applied.get(name)
            if mark is not None and mark > first:
                below[i] = mark
                found = True
    if not found:
        return None
    result: npt.NDArray[np.bool_] = batch.offsets < below[code]
    return result


def _concat(batches: list[ParsedBatch]) -> ParsedBatch:
    if len(batches) == 1:
        return batches[0]
    return ParsedBatch(
        offsets=np.concatenate([b.offsets for b in batches]),
        ts=np.concatenate([b.ts for b in batches]),
        columns={c: np.concatenate([b.columns[c] for b in batches]) for c in batches[0].columns},
        rejected=[r for b in batches for r in b.rejected],
    )
