"""The stream worker: a Faust app with one batch-fed agent per source topic.

`feature-service worker` runs it. Faust owns consumption, the consumer group, partition
assignment, rebalancing and the worker lifecycle (`stream.faust_batches`); each fetched
batch goes to the `SourceProcessor` of its topic, which parses, dead-letters, logs to
Parquet and folds into Redis with exactly-once effect (`stream.source_processor`).
A handler that fails (Redis or the broker away) is retried until it succeeds: the worker
waits, it does not drop events.

Each worker counts what it does and leaves a heartbeat in Redis
(`observability.worker_monitor`); with `FS_WORKER_METRICS_PORT` set it also serves
those counters for Prometheus. Logs are JSON lines (`observability.logs`).

New definitions: given a `DefinitionsWatcher`, the worker polls it every
`FS_DEFINITIONS_POLL_S` and, when the definitions changed and load cleanly, stops itself
as on SIGTERM (exit code 0), so that its supervisor (`feature-service up`, Kubernetes)
starts it again with the new registry. Stopping is the ordinary path: pending work is
replayed by the next owner, exactly once.

Changed views (`online.view_layouts`). Before it consumes anything, the worker records
the state layout of each of its views in Redis (`claim_layouts`); definitions that change
a recorded layout (features added or removed, other windows, hops or `where` under the
same view name) are refused, because the view's stored state cannot take them:

- at start, the worker exits with code 1 and one line naming the view and the roll-out
  (a new view name, then `feature-service backfill`); its supervisor restarts it;
- while running, when such definitions appear on disk (edited by hand; `apply` refuses
  them), it keeps running the definitions it has, logs the refusal once (ERROR), and
  its /health shows it (`definitions: {"status": "refused", "detail": ...}`). The next
  change on disk that is allowed restarts it as usual.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust
import orjson
from aiokafka import AIOKafkaProducer
from faust.types import TP
from redis.exceptions import RedisError

from feature_service.core.config import Settings
from feature_service.definitions import Registry
from feature_service.definitions.watch import DefinitionsWatcher
from feature_service.observability.logs import logging_config
from feature_service.observability.worker_monitor import WorkerMonitor
from feature_service.offline.event_log import EventLog
from feature_service.online.accepted_definitions import record_accepted
from feature_service.online.redis_client import connect
from feature_service.online.view_layouts import (
    READ_ERRORS,
    LayoutChangeRefused,
    check_definitions,
    claim_layouts,
)
from feature_service.stream.faust_batches import BatchApp, Rewind, RewindPartitions
from feature_service.stream.health_server import start_health_server
from feature_service.stream.source_processor import FencedError, SourceProcessor

log = logging.getLogger(__name__)


class WorkerRuntime:
    """Clients the handlers share, opened on the worker's event loop at first use."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self.processors: dict[str, SourceProcessor] = {}
        self.monitor = WorkerMonitor(
            s.name for s in registry.sources.values() if registry.views_of_source(s.name)
        )
        self.redis: Any = None
        self.refused_definitions = ""  # definitions on disk this worker refused to run
        self.lag: dict[TP, int] = {}  # the app's: events not yet fetched, per partition
        self._started = False
        self._closers: list[Callable[[], Awaitable[Any]]] = []

    async def start(self) -> None:
        if self._started:
            return
        assert self.settings.broker_url and self.settings.redis_url
        redis = connect(
            self.settings.redis_url,
            cluster=self.settings.redis_cluster,
            socket_timeout=10,
            socket_connect_timeout=5,
        )
        producer = AIOKafkaProducer(**self.settings.kafka.aiokafka_kwargs(), acks="all")
        await producer.start()
        self.redis = redis
        self._closers = [producer.stop, lambda: self.monitor.leave(redis), redis.aclose]
        event_log = EventLog(self.settings.offline_uri)
        for source in self.registry.sources.values():
            if self.registry.views_of_source(source.name):
                self.processors[source.topic] = SourceProcessor(
                    self.registry,
                    source,
                    redis,
                    event_log,
                    producer,
                    flush_events=self.settings.flush_events,
                    flush_interval_s=self.settings.flush_interval_s,
                    cache_entities=self.settings.state_cache_entities,
                    head_events=self.settings.state_head_events,
                )
        self._started = True
        gc.freeze()  # start-up's objects live as long as the worker: out of full collections

    async def close(self) -> None:
        """Close the clients; pending work is not flushed (the next owner replays it)."""
        for close in self._closers:
            await close()
        self._closers = []

    def handler_for(self, topic: str) -> Any:
        async def handle(tp: TP, records: Sequence[Any]) -> None:
            await self.start()
            try:
                await self.processors[topic].handle(tp.partition, records)
            except Rewind:
                raise
            except Exception as exc:
                await self._failed(exc)
                raise

        return handle

    def _assigned(self, topic: str) -> set[int]:
        """The partitions of `topic` this worker holds now (none mid-rebalance)."""
        if self.monitor.assignment is None:
            return set()
        try:
            return {tp.partition for tp in self.monitor.assignment() if tp.topic == topic}
        except Exception:  # no consumer yet, or a rebalance in progress
            return set()

    async def _failed(self, exc: Exception) -> None:
        """Count a failed attempt (retried by the consumer) and say so in the heartbeat.
        Being fenced is the ordinary hand-over between workers, not a failure."""
        if isinstance(exc, FencedError):
            return
        if isinstance(exc, (RedisError, OSError)):
            self.monitor.redis_error()
        self.monitor.failed(exc)
        if self.redis is not None:
            await self.monitor.beat(self.redis)

    async def flush(self, force: bool) -> dict[TP, int]:
        """Flush processors that are due (all with `force`); the offsets now durable."""
        await self.start()
        durable: dict[TP, int] = {}
        for topic, processor in self.processors.items():
            behind = sum(n for tp, n in self.lag.items() if tp.topic == topic)
            due = force or processor.flush_due(behind)
            started = time.perf_counter()
            try:
                if not due:  # Redis may have lost data meanwhile
                    await processor.check_idle(self._assigned(topic))
                    continue
                result = await processor.flush()
            except FencedError as fenced:  # re-read those partitions from Redis's offsets
                raise RewindPartitions(
                    {TP(topic, p): offset for p, offset in fenced.rewind.items()}
                ) from fenced
            except Exception as exc:
                await self._failed(exc)
                raise
            self.monitor.succeeded()
            self.monitor.flushed(
                processor.source.name,
                result.accepted,
                result.rejected,
                result.late,
                time.perf_counter() - started,
                skipped=result.skipped,
            )
            for partition, offset in result.durable.items():
                durable[TP(topic, partition)] = offset
        await self.monitor.beat(self.redis)
        return durable


def build_app(
    settings: Settings, registry: Registry, watcher: DefinitionsWatcher | None = None
) -> tuple[BatchApp, WorkerRuntime]:
    """The Faust app and its runtime for the sources that have feature views."""
    if not settings.broker_url or not settings.redis_url:
        raise ValueError(
            "the worker needs a broker and Redis: set FS_BROKER_URL and FS_REDIS_URL "
            "or start it with `feature-service up`"
        )
    faust_dir = settings.stores_dir / "faust"
    faust_dir.mkdir(parents=True, exist_ok=True)
    kafka = settings.kafka
    app = BatchApp(
        settings.consumer_group,
        broker=kafka.faust_broker(),
        broker_credentials=kafka.faust_credentials(),
        web_enabled=False,
        web_host="127.0.0.1",
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_session_timeout=settings.rebalance_timeout_s,
        broker_heartbeat_interval=max(1, settings.rebalance_timeout_s // 4),
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=settings.max_poll_records,
        consumer_max_fetch_size=8 * 1024 * 1024,
        topic_allow_declare=True,
        producer_acks=-1,
        # Faust keeps a folder per app id; under the stores, not in the working directory
        datadir=str(faust_dir / "{conf.id}-data"),
    )
    runtime = WorkerRuntime(settings, registry)
    if watcher is not None:  # started on the last accepted definitions: say so on /health
        runtime.refused_definitions = watcher.refused
    runtime.lag = app.lag
    topics = {s.topic for s in registry.sources.values()}
    runtime.monitor.assignment = lambda: [
        tp for tp in app.consumer.assignment() if tp.topic in topics
    ]
    for source in registry.sources.values():
        if registry.views_of_source(source.name):
            app.batch_handler(source.topic, runtime.handler_for(source.topic))
    app.batch_flusher = runtime.flush
    app.batch_closer = runtime.close
    if watcher is not None and settings.definitions_poll_s > 0:

        @app.timer(interval=settings.definitions_poll_s)
        async def stop_on_new_definitions() -> None:
            new = watcher.poll()
            if new is None:  # unchanged, or files that do not load (then `refused` says why)
                runtime.refused_definitions = watcher.refused or runtime.refused_definitions
                return
            # before the first batch there is no client yet: the running registry, whose
            # layouts were recorded at start, is then the baseline
            check = await check_definitions(runtime.redis, new, registry)
            if check.changes:
                runtime.refused_definitions = check.refusal
                log.error(
                    "new definitions under %s refused; running the previous ones: %s",
                    watcher.path,
                    check.log_line,
                )
                return
            log.warning("stopping so that the restarted worker runs the new definitions")
            os.kill(os.getpid(), signal.SIGTERM)

    if settings.health_port is not None:
        port = settings.health_port

        def status() -> dict[str, Any]:
            assert runtime.monitor.assignment is not None
            assigned = list(runtime.monitor.assignment()) if app.started else []
            refused = runtime.refused_definitions
            return {
                "ready": bool(app.started),
                "partitions": len(assigned),
                "events": sum(runtime.monitor.totals.values()),
                "failing": runtime.monitor.failing,
                "definitions": {"status": "refused", "detail": refused}
                if refused
                else {"status": "ok"},
            }

        @app.task
        async def serve_health() -> None:
            await start_health_server(settings.health_host, port, status)

    return app, runtime


async def record_layouts(settings: Settings, registry: Registry) -> None:
    """Record the layouts of the views about to be served (`claim_layouts`), waiting
    for Redis if it is away; `LayoutChangeRefused` if a view changes a recorded one."""
    assert settings.redis_url
    delay = 0.5
    while True:
        redis = connect(
            settings.redis_url,
            cluster=settings.redis_cluster,
            socket_timeout=10,
            socket_connect_timeout=5,
        )
        try:
            refused = await claim_layouts(redis, registry)
            break
        except READ_ERRORS as exc:
            log.warning("cannot record the view layouts in Redis (%s); retrying", exc)
        finally:
            await redis.aclose()
        await asyncio.sleep(delay)  # waiting for Redis to come back, as the handlers do
        delay = min(2 * delay, 5.0)
    if refused:
        raise LayoutChangeRefused(refused)


class BrokerForgotTopics(ValueError):
    """Redis holds offsets past the end of the broker's partitions: the broker lost them."""


async def check_offsets_against_broker(settings: Settings, registry: Registry) -> None:
    """Refuse to run when Redis remembers offsets the broker's topics do not reach.

    That is a broker that forgot its topics (the memory-only Tansu broker restarted, a
    Kafka data folder wiped) or a topic deleted and created again, beside a Redis that
    kept its data. Run on, the worker would skip the new events up to the remembered
    offsets (and later ones would overwrite offline files of the old ones): online
    state and the offline log would silently describe other events. So it stops with
    one line saying so (`feature-service up` starts clean in that case on its own,
    `EmbeddedStack.start_clean`). A broker that cannot be asked is waited for as usual.
    """
    from feature_service.observability.pipeline import BrokerOffsets, BrokerUnavailable
    from feature_service.online.redis_layout import offset_key

    assert settings.redis_url
    sources = [s for s in registry.sources.values() if registry.views_of_source(s.name)]
    if not sources:
        return
    try:
        ends = await BrokerOffsets(settings.kafka, timeout_s=10.0).end_offsets(
            {s.topic: s.partitions for s in sources}
        )
    except BrokerUnavailable as exc:
        log.warning("cannot compare Redis offsets with the broker's (%s); going on", exc)
        return
    redis = connect(settings.redis_url, cluster=settings.redis_cluster, socket_timeout=10)
    try:
        for source in sources:
            partitions = sorted(p for (topic, p) in ends if topic == source.topic)
            raws = [await redis.get(offset_key(source.name, p)) for p in partitions]
            for p, raw in zip(partitions, raws, strict=True):
                committed = 0 if raw is None else int(orjson.loads(raw)[0])
                end = ends[(source.topic, p)]
                if committed > end:
                    raise BrokerForgotTopics(
                        f"{source.topic}[{p}]: Redis has events up to offset {committed} but "
                        f"the broker's partition ends at {end}: the broker lost this topic "
                        "(a memory-only broker restarted, or the topic was created again) "
                        "while Redis kept its state; refusing to skip or mix events. Start "
                        "clean (empty the Redis database and move the offline log aside; "
                        "`feature-service up` does this itself) or point FS_REDIS_URL at "
                        "the Redis that belongs to this broker"
                    )
    finally:
        await redis.aclose()


def run_worker(
    settings: Settings, registry: Registry, watcher: DefinitionsWatcher | None = None
) -> None:
    """Run the worker in the foreground until SIGTERM/SIGINT (or new definitions).

    Raises `LayoutChangeRefused` (before consuming anything) when `registry` changes
    the recorded layout of a view: see the module docstring.
    """
    app, _ = build_app(settings, registry, watcher)
    asyncio.run(check_offsets_against_broker(settings, registry))
    asyncio.run(record_layouts(settings, registry))
    record_accepted(settings, registry)  # what a worker started beside bad files runs
    if settings.worker_metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)
    worker = faust.Worker(
        app,
        loglevel=settings.log_level.upper(),
        quiet=True,
        logging_config=logging_config(settings.log_level),
    )
    # Faust leaves the root logger at DEBUG; per-send debug logging costs throughput.
    logging.getLogger().setLevel(settings.log_level.upper())
    worker.execute_from_commandline()
