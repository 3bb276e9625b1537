"""The pipeline's numbers, read from where the workers leave them: Redis and the broker.

One `PipelineStatus` feeds `/status` (the UI), `/metrics`, `/health` and
`feature-service status`, so they always agree. Per source:

- `events`, `dlq`, `late` and `skipped` (per view), `flushes`, `last_flush_ms`: the
  worker's counters in `fs:stats:{<source>}`, written in the same script as the offsets
  they count. `skipped:<view>`: accepted events the view left out because their join
  key for it is null or empty (`plan.ViewPlan.takes`); they count in the other views.
- `newest_event_ts` and `freshness_s`: the newest event time of any partition, and how
  old it is now (wall clock minus event time). For a replayed sample of old events
  freshness is the sample's age (days), not a fault: `last_commit_ts` (the worker's
  wall clock at its newest commit) says whether the pipeline itself is moving.
- `lag`: per partition, the broker's log end offset minus the next offset the online
  state reflects (`fs:o:{<source>}:<p>`); summed over partitions. The end offset is the
  larger of ListOffsets(latest) and the high watermark of a fetch of the last batch:
  the embedded Tansu broker answers ListOffsets with the last batch's base offset + 1
  (1 after one batch of 10 records), while its fetch high watermark is right (10); on
  Kafka both agree. When the broker cannot be asked, lag is unknown (None) and
  `broker_error` says why.
- `events_per_s` and `workers`: the sum of the rates in the heartbeats of live workers
  consuming the source (`observability.worker_monitor`).

>>> broker = BrokerOffsets("127.0.0.1:9092")
>>> status = await read_pipeline_status(redis, registry, broker)  # doctest: +SKIP
>>> status.sources[0].lag  # doctest: +SKIP
0
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from feature_service.core.kafka import KafkaConnection, kafka_connection
from feature_service.definitions import Registry, Source
from feature_service.online.redis_layout import WORKERS_KEY, offset_key, stats_key

# A worker whose heartbeat is older than this is not counted as live.
STALE_AFTER_S = 30.0


@dataclass
class PartitionStatus:
    partition: int
    committed: int | None  # next offset the online state reflects
    end_offset: int | None  # the broker's log end offset
    lag: int | None
    newest_event_ts: float | None


@dataclass
class WorkerStatus:
    id: str
    host: str
    pid: int
    seen_s_ago: float
    started: float
    partitions: list[str]
    sources: dict[str, dict[str, float]]
    failing: dict[str, Any] | None = None  # error, since, attempts: processing keeps failing


@dataclass
class SourceStatus:
    source: str
    topic: str
    views: list[str]
    format: str = "json"  # how its events are written: json, avro, protobuf, jsonschema
    events: int = 0
    dlq: int = 0
    late: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # per view: no join key for it
    flushes: int = 0
    last_flush_ms: float | None = None
    last_commit_ts: float | None = None  # the worker's wall clock at its newest commit
    newest_event_ts: float | None = None
    freshness_s: float | None = None
    lag: int | None = None
    events_per_s: float | None = None  # None: no live worker
    workers: int = 0
    partitions: list[PartitionStatus] = field(default_factory=list)


@dataclass
class PipelineStatus:
    at: float
    sources: list[SourceStatus]
    workers: list[WorkerStatus]
    broker_error: str | None = None

    def source(self, name: str) -> SourceStatus:
        return next(s for s in self.sources if s.source == name)

    def as_dict(self) -> dict[str, Any]:
        """Plain data, the body of `GET /status` and of `feature-service status --json`."""
        return asdict(self)


class BrokerOffsets:
    """Log end offsets of topics, asked with a short-lived consumer and cached briefly.

    A new connection per question (at most one per `ttl_s`) keeps nothing to go stale
    when the broker restarts; it costs a few milliseconds.
    """

    def __init__(
        self, broker: KafkaConnection | str | None, ttl_s: float = 1.0, timeout_s: float = 2.0
    ) -> None:
        self.connection = None if broker is None else kafka_connection(broker)
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._lock = asyncio.Lock()
        self._cached: tuple[float, frozenset[tuple[str, int]], dict[tuple[str, int], int]] | None
        self._cached = None

    async def end_offsets(self, topics: dict[str, int]) -> dict[tuple[str, int], int]:
        """`{(topic, partition): end offset}` for every partition of `topics`.

        `topics` maps a topic to its declared partition count, used when the broker's
        metadata does not list the topic. Raises `BrokerUnavailable`.
        """
        if self.connection is None:
            raise BrokerUnavailable("no broker configured (FS_BROKER_URL)")
        async with self._lock:
            key = frozenset(topics.items())
            now = time.monotonic()
            if self._cached and self._cached[1] == key and now - self._cached[0] < self.ttl_s:
                return self._cached[2]
            try:
                offsets = await asyncio.wait_for(self._ask(topics), self.timeout_s)
            except Exception as exc:  # any failure to answer means "unknown", with the reason
                raise BrokerUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
            self._cached = (now, key, offsets)
            return offsets

    async def _ask(self, topics: dict[str, int]) -> dict[tuple[str, int], int]:
        assert self.connection is not None
        consumer = AIOKafkaConsumer(
            **self.connection.aiokafka_kwargs(),
            enable_auto_commit=False,
            request_timeout_ms=int(self.timeout_s * 1000),
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        try:
            tps = []
            for topic, declared in topics.items():
                known = consumer.partitions_for_topic(topic)
                tps += [TopicPartition(topic, p) for p in sorted(known or range(declared))]
            listed = await consumer.end_offsets(tps)
            # Tansu answers ListOffsets(latest) with the last batch's base offset + 1, not
            # the log end; the high watermark of a fetch response is right on both. So
            # fetch the last batch (at most one) and take the larger of the two.
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, max(listed[tp] - 1, 0))
            deadline = time.monotonic() + self.timeout_s / 2
            while time.monotonic() < deadline and any(consumer.highwater(tp) is None for tp in tps):
                await consumer.getmany(timeout_ms=100, max_records=1)
            return {
                (tp.topic, tp.partition): max(int(listed[tp]), consumer.highwater(tp) or 0)
                for tp in tps
            }
        finally:
            await consumer.stop()


class BrokerUnavailable(RuntimeError):
    """The broker could not tell its end offsets."""


def _number(raw: bytes | None) -> float | None:
    return None if raw is None else float(raw)


async def read_pipeline_status(
    redis: aioredis.Redis,
    registry: Registry,
    broker: BrokerOffsets | None,
    now: float | None = None,
) -> PipelineStatus:
    """Every source that has feature views: counters, freshness, lag, rate, workers.

    One Redis round trip plus (cached) end offsets. Raises Redis errors as they come.
    """
    now = time.time() if now is None else now
    sources = [s for s in registry.sources.values() if registry.views_of_source(s.name)]
    ends_task = None
    if broker is not None:
        ends_task = asyncio.ensure_future(
            broker.end_offsets({s.topic: s.partitions for s in sources})
        )
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(WORKERS_KEY)
            for source in sources:
                pipe.hgetall(stats_key(source.name))
                pipe.mget([offset_key(source.name, p) for p in range(_max_partitions(source))])
            replies = await pipe.execute()
    except BaseException:
        if ends_task is not None:
            ends_task.cancel()
        raise
    broker_error = None
    ends: dict[tuple[str, int], int] | None = None
    if ends_task is not None:
        try:
            ends = await ends_task
        except BrokerUnavailable as exc:
            broker_error = str(exc)
    else:
        broker_error = "not asked"
    names = {s.name for s in sources}
    # Only workers of these sources: several deployments (or tests) may share one Redis.
    workers = [w for w in _live_workers(replies[0], now) if names & set(w.sources)]
    out = []
    for i, source in enumerate(sources):
        stats = {k.decode(): v for k, v in replies[1 + 2 * i].items()}
        offsets = replies[2 + 2 * i]
        out.append(_source_status(registry, source, stats, offsets, ends, workers, now))
    return PipelineStatus(at=now, sources=out, workers=workers, broker_error=broker_error)


def _max_partitions(source: Source) -> int:
    # Committed offsets are read for the declared partitions; a topic grown since is
    # still reported (from its end offsets) with no committed offset for the new ones.
    return source.partitions


def _live_workers(raw: dict[bytes, bytes], now: float) -> list[WorkerStatus]:
    workers = []
    for key, value in raw.items():
        try:
            beat: dict[str, Any] = orjson.loads(value)
            seen = float(beat["seen"])
        except (ValueError, KeyError, TypeError):
            continue
        if now - seen > STALE_AFTER_S:
            continue
        workers.append(
            WorkerStatus(
                id=key.decode(),
                host=str(beat.get("host", "")),
                pid=int(beat.get("pid", 0)),
                seen_s_ago=max(0.0, now - seen),
                started=float(beat.get("started", seen)),
                partitions=list(beat.get("partitions", [])),
                sources=dict(beat.get("sources", {})),
                failing=beat.get("failing") or None,
            )
        )
    return sorted(workers, key=lambda w: w.id)


def _source_status(
    registry: Registry,
    source: Source,
    stats: dict[str, bytes],
    offsets: list[bytes | None],
    ends: dict[tuple[str, int], int] | None,
    workers: list[WorkerStatus],
    now: float,
) -> SourceStatus:
    views = [v.name for v in registry.views_of_source(source.name)]
    status = SourceStatus(
        source=source.name,
        topic=source.topic,
        views=views,
        format=source.format.kind if source.format is not None else "json",
        events=int(stats.get("events", 0)),
        dlq=int(stats.get("dlq", 0)),
        late={v: int(stats.get(f"late:{v}", 0)) for v in views},
        skipped={v: int(stats.get(f"skipped:{v}", 0)) for v in views},
        flushes=int(stats.get("flushes", 0)),
        last_flush_ms=_number(stats.get("last_flush_ms")),
        last_commit_ts=_number(stats.get("last_commit_ts")),
    )
    committed = {p: int(orjson.loads(raw)[0]) for p, raw in enumerate(offsets) if raw is not None}
    newest = {
        int(k.split(":", 1)[1]): float(v)
        for k, v in stats.items()
        if k.startswith("newest_event_ts:")
    }
    partitions = set(committed) | set(newest) | set(range(source.partitions))
    if ends is not None:
        partitions |= {p for (topic, p) in ends if topic == source.topic}
    total_lag: int | None = 0
    for p in sorted(partitions):
        end = None if ends is None else ends.get((source.topic, p))
        lag = None if end is None else max(0, end - committed.get(p, 0))
        if lag is None:
            total_lag = None
        elif total_lag is not None:
            total_lag += lag
        status.partitions.append(PartitionStatus(p, committed.get(p), end, lag, newest.get(p)))
    status.lag = total_lag
    if newest:
        status.newest_event_ts = max(newest.values())
        status.freshness_s = now - status.newest_event_ts
    consuming = [w for w in workers if source.name in w.sources]
    status.workers = len(consuming)
    if consuming:
        status.events_per_s = sum(float(w.sources[source.name].get("rate", 0)) for w in consuming)
    return status
