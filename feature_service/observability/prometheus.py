"""Prometheus metrics of the API, and the pipeline's numbers as Prometheus families.

API (this process): `fs_api_requests_total{endpoint,method,status}`,
`fs_api_request_duration_seconds{endpoint,method}` (histogram), and
`fs_api_redis_errors_total`. `endpoint` is the route's path template
(`/feature-views/{name}`), or `unmatched`, so labels stay few.

Pipeline (read from Redis and the broker at scrape time, the same for every API
replica): `fs_events_total`, `fs_dlq_events_total`, `fs_late_events_total{view}`,
`fs_skipped_events_total{view}` (events a view left out: their join key for it is null
or empty), `fs_flushes_total`, `fs_last_flush_duration_seconds`,
`fs_last_commit_timestamp_seconds`, `fs_newest_event_timestamp_seconds`,
`fs_freshness_seconds`, `fs_events_per_second`, `fs_live_workers` (per source), and per
partition `fs_committed_offset`, `fs_end_offset`, `fs_consumer_lag`; plus `fs_redis_up`
and `fs_broker_up`.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from feature_service.observability.pipeline import PipelineStatus

REQUESTS = Counter(
    "fs_api_requests",
    "HTTP requests answered, by endpoint and status",
    ["endpoint", "method", "status"],
)
LATENCY = Histogram(
    "fs_api_request_duration_seconds",
    "Time from request to the end of the response, by endpoint",
    ["endpoint", "method"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
REDIS_ERRORS = Counter("fs_api_redis_errors", "Redis calls of the API that failed")


class PipelineCollector(Collector):
    """Yields the families of one `PipelineStatus` (or only `fs_redis_up 0` without one)."""

    def __init__(self, status: PipelineStatus | None) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        status = self.status
        redis_up = GaugeMetricFamily("fs_redis_up", "Whether the API could read Redis")
        redis_up.add_metric([], 0.0 if status is None else 1.0)
        yield redis_up
        if status is None:
            return
        broker_up = GaugeMetricFamily("fs_broker_up", "Whether the broker told its end offsets")
        broker_up.add_metric([], 0.0 if status.broker_error else 1.0)
        yield broker_up

        src = ["source"]
        events = CounterMetricFamily("fs_events", "Events accepted into the stores", labels=src)
        dlq = CounterMetricFamily(
            "fs_dlq_events", "Events sent to the dead-letter topic", labels=src
        )
        late = CounterMetricFamily(
            "fs_late_events", "Events too late for a view's online state", labels=["source", "view"]
        )
        skipped = CounterMetricFamily(
            "fs_skipped_events",
            "Events a view left out because their join key for it is null or empty",
            labels=["source", "view"],
        )
        flushes = CounterMetricFamily("fs_flushes", "Worker commits", labels=src)
        committed_at = GaugeMetricFamily(
            "fs_last_commit_timestamp_seconds", "Wall clock of the newest commit", labels=src
        )
        flush_s = GaugeMetricFamily(
            "fs_last_flush_duration_seconds", "Duration of the newest commit", labels=src
        )
        newest = GaugeMetricFamily(
            "fs_newest_event_timestamp_seconds", "Newest event time in the state", labels=src
        )
        fresh = GaugeMetricFamily(
            "fs_freshness_seconds", "Now minus the newest event time", labels=src
        )
        rate = GaugeMetricFamily(
            "fs_events_per_second", "Events/s of the live workers (10 s window)", labels=src
        )
        workers = GaugeMetricFamily(
            "fs_live_workers", "Workers with a recent heartbeat", labels=src
        )
        failing = GaugeMetricFamily(
            "fs_failing_workers",
            "Live workers whose processing fails attempt after attempt",
            labels=src,
        )
        tp = ["topic", "partition"]
        committed = GaugeMetricFamily(
            "fs_committed_offset", "Next offset the online state reflects", labels=tp
        )
        end = GaugeMetricFamily("fs_end_offset", "The broker's log end offset", labels=tp)
        lag = GaugeMetricFamily("fs_consumer_lag", "End offset minus committed offset", labels=tp)
        for s in status.sources:
            events.add_metric([s.source], s.events)
            dlq.add_metric([s.source], s.dlq)
            flushes.add_metric([s.source], s.flushes)
            workers.add_metric([s.source], s.workers)
            failing.add_metric(
                [s.source],
                sum(1 for w in status.workers if w.failing and s.source in w.sources),
            )
            for view, n in s.late.items():
                late.add_metric([s.source, view], n)
            for view, n in s.skipped.items():
                skipped.add_metric([s.source, view], n)
            if s.last_commit_ts is not None:
                committed_at.add_metric([s.source], s.last_commit_ts)
            if s.last_flush_ms is not None:
                flush_s.add_metric([s.source], s.last_flush_ms / 1000)
            if s.newest_event_ts is not None and s.freshness_s is not None:
                newest.add_metric([s.source], s.newest_event_ts)
                fresh.add_metric([s.source], s.freshness_s)
            if s.events_per_s is not None:
                rate.add_metric([s.source], s.events_per_s)
            for p in s.partitions:
                labels = [s.topic, str(p.partition)]
                if p.committed is not None:
                    committed.add_metric(labels, p.committed)
                if p.end_offset is not None:
                    end.add_metric(labels, p.end_offset)
                if p.lag is not None:
                    lag.add_metric(labels, p.lag)
        yield from (events, dlq, late, skipped, flushes, flush_s, committed_at, newest, fresh)
        yield from (rate, workers, failing)
        yield from (committed, end, lag)
