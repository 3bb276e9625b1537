"""What a stream worker reports about itself: Prometheus counters and a heartbeat in Redis.

The worker calls `flushed` after each flush and `beat` from its flush loop (which runs
every half second, also when idle). The heartbeat is one field of the `fs:workers`
hash, `<host>:<pid>` -> JSON:

    {"seen": 1762171200.5, "started": 1762170000.0, "host": "w-1", "pid": 42,
     "partitions": ["transactions:0", ...],
     "sources": {"transactions": {"events": 5000, "rate": 812.4}},
     "failing": {"error": "OSError: [Errno 28] No space left on device", "since": ...,
                 "attempts": 12}}

`failing` is there while the worker's handler or flush has failed `FAILING_AFTER` times
in a row (it retries, and nothing is skipped, but retrying may never fix the cause, a
full disk say): readers report the worker as failing with the error, not as ok.

`rate` is events (accepted or dead-lettered) per second over the last `RATE_WINDOW_S`,
measured by the worker itself, so readers (API, UI, `feature-service status`) need no
second sample: events/s of a source is the sum over its live workers. A worker is live
while its `seen` is less than `pipeline.STALE_AFTER_S` old; entries older than
`PRUNE_AFTER_S` are deleted by the next beat of any worker.

With `FS_WORKER_METRICS_PORT` set, the same counters are served for Prometheus by
`prometheus_client` on that port (`fs_worker_*`).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge, Histogram

from feature_service.online.redis_layout import WORKERS_KEY

log = logging.getLogger(__name__)

BEAT_INTERVAL_S = 2.0
FAILING_AFTER = 3  # consecutive failed attempts before a worker reports itself failing
RATE_WINDOW_S = 10.0
PRUNE_AFTER_S = 600.0

EVENTS = Counter("fs_worker_events", "Events accepted into the stores", ["source"])
DLQ = Counter(
    "fs_worker_dlq_events", "Events refused and sent to the dead-letter topic", ["source"]
)
LATE = Counter(
    "fs_worker_late_events", "Events too late for a view's online state", ["source", "view"]
)
SKIPPED = Counter(
    "fs_worker_skipped_events",
    "Events a view left out because their join key for it is null or empty",
    ["source", "view"],
)
FLUSH_SECONDS = Histogram(
    "fs_worker_flush_duration_seconds",
    "Time to make pending events durable (offline files, then Redis)",
    ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RATE = Gauge("fs_worker_events_per_second", "Events per second over the last 10 s", ["source"])
REDIS_ERRORS = Counter("fs_worker_redis_errors", "Redis commands of the worker that failed")
HEARTBEATS = Counter("fs_worker_heartbeats", "Heartbeats written to Redis")
FAILING = Gauge("fs_worker_failing", "1 while the worker's processing fails attempt after attempt")


class WorkerMonitor:
    """Counters, events/s and the heartbeat of one worker process."""

    def __init__(
        self,
        sources: Iterable[str],
        assignment: Callable[[], Iterable[Any]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.id = f"{socket.gethostname()}:{os.getpid()}"
        self.clock = clock
        self.started = clock()
        self.assignment = assignment
        self.totals: dict[str, int] = {s: 0 for s in sources}
        self._samples: deque[tuple[float, dict[str, int]]] = deque()
        self._last_beat = float("-inf")
        self._failures = 0
        self._failing_since: float | None = None
        self._last_error = ""

    def failed(self, exc: BaseException) -> None:
        """Count one failed attempt at handling or flushing (it will be retried)."""
        if self._failures == 0:
            self._failing_since = self.clock()
        self._failures += 1
        self._last_error = f"{type(exc).__name__}: {exc}"[:500]
        if self._failures >= FAILING_AFTER:
            FAILING.set(1)

    def succeeded(self) -> None:
        """A handle or flush went through: whatever failed before is fixed."""
        if self._failures:
            log.warning("processing recovered after %d failed attempts", self._failures)
        self._failures = 0
        self._failing_since = None
        FAILING.set(0)

    @property
    def failing(self) -> dict[str, Any] | None:
        """The error, since when and how many attempts, while processing keeps failing."""
        if self._failures < FAILING_AFTER:
            return None
        return {
            "error": self._last_error,
            "since": self._failing_since,
            "attempts": self._failures,
        }

    def flushed(
        self,
        source: str,
        accepted: int,
        rejected: int,
        late: dict[str, int],
        seconds: float,
        skipped: dict[str, int] | None = None,
    ) -> None:
        """Count what one flush of `source` made durable (`skipped`: per view, the
        accepted events without its join key)."""
        self.totals[source] = self.totals.get(source, 0) + accepted + rejected
        EVENTS.labels(source).inc(accepted)
        DLQ.labels(source).inc(rejected)
        for view, n in late.items():
            if n:
                LATE.labels(source, view).inc(n)
        for view, n in (skipped or {}).items():
            if n:
                SKIPPED.labels(source, view).inc(n)
        FLUSH_SECONDS.labels(source).observe(seconds)

    def redis_error(self) -> None:
        REDIS_ERRORS.inc()

    def rates(self, now: float) -> dict[str, float]:
        """Events/s per source since the oldest sample within the rate window."""
        self._samples.append((now, dict(self.totals)))
        while len(self._samples) > 1 and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()
        then, old = self._samples[0]
        elapsed = now - then
        out = {}
        for source, total in self.totals.items():
            out[source] = (total - old.get(source, 0)) / elapsed if elapsed > 0 else 0.0
            RATE.labels(source).set(out[source])
        return out

    def heartbeat(self, now: float) -> dict[str, Any]:
        rates = self.rates(now)
        partitions: list[str] = []
        if self.assignment is not None:
            try:
                partitions = sorted(f"{tp.topic}:{tp.partition}" for tp in self.assignment())
            except Exception:  # no consumer yet (starting) or mid-rebalance: say nothing
                partitions = []
        beat: dict[str, Any] = {
            "seen": now,
            "started": self.started,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "partitions": partitions,
            "sources": {
                s: {"events": self.totals[s], "rate": round(rates[s], 3)} for s in self.totals
            },
        }
        if self.failing is not None:
            beat["failing"] = self.failing
        return beat

    async def beat(self, redis: aioredis.Redis, force: bool = False) -> None:
        """Write the heartbeat if `BEAT_INTERVAL_S` passed; prune long-gone workers.

        A failure is counted and logged, never raised: a missed beat must not stop
        event processing (the flush that follows fails loudly if Redis is really away).
        """
        now = self.clock()
        if not force and now - self._last_beat < BEAT_INTERVAL_S:
            return
        self._last_beat = now
        try:
            beats = await redis.hgetall(WORKERS_KEY)
            gone = [k for k, v in beats.items() if now - _seen(v) > PRUNE_AFTER_S and k != self.id]
            async with redis.pipeline(transaction=False) as pipe:
                pipe.hset(WORKERS_KEY, self.id, orjson.dumps(self.heartbeat(now)))
                if gone:
                    pipe.hdel(WORKERS_KEY, *gone)
                await pipe.execute()
            HEARTBEATS.inc()
        except Exception as exc:
            self.redis_error()
            log.warning("worker heartbeat failed: %s", exc)

    async def leave(self, redis: aioredis.Redis) -> None:
        """Remove this worker's heartbeat (on a clean stop)."""
        try:
            await redis.hdel(WORKERS_KEY, self.id)
        except Exception as exc:
            log.warning("could not remove the worker heartbeat: %s", exc)


def _seen(raw: bytes | str) -> float:
    try:
        return float(orjson.loads(raw)["seen"])
    except (ValueError, KeyError, TypeError):
        return float("-inf")
