"""Quix Streams peer: 12 windowed features per customer over the worker's topic.

Runs in the Quix venv (benchmarks/quix_env.py), not the project's:

    .venv-quix/bin/python benchmarks/peers/quix_windows.py --broker HOST:PORT \
        --topic transactions --events 20000 --state-dir /tmp/q --out quix.json

Per message key (the topic is keyed by customer_id), count / sum / mean / max of `amount`
over 1h (hop 1 min), 1d (hop 1 h) and 7d (hop 1 h): three hopping windows, each one
`.agg(count=Count(), sum=Sum("amount"), mean=Mean("amount"), max=Max("amount"))`, as
three branches of one dataframe. `--sliding` uses sliding windows of 1h, 1d and 7d
instead (Quix's `sliding_window`, exactly `[t - W, t]`).

Choices (Quix's defaults unless said):
- State: RocksDB, the only store Quix's time windows use (under `--state-dir`).
- `use_changelog_topics=True` (the default; `--no-changelog` turns it off): the
  changelog is what makes Quix's state survive the loss of its disk, as Redis does for
  the worker's, so it is part of the comparable cost. Tansu keeps it in memory.
- Event time from the event's `ts` (epoch seconds), not the Kafka timestamp (produce
  time). `grace_ms=0` (the default): an event behind a window's end is dropped from that
  window (counted in `late_window_updates`, not logged).
- Emission `.final()`: closed windows only, the cheaper of Quix's two modes (`.current()`
  would emit every one of the ~252 updated windows per event).
- At-least-once (the default). Exactly-once runs on Tansu but is not exactly-once there
  (shared/notes/peers-on-this-stack.md).
- Malformed events (not JSON, no customer_id, non-numeric amount or ts) are dropped by a
  filter after the deserializer; they count as processed, as the worker counts its
  dead letters.
- Tansu: `retention.ms` is set on the input topic first with IncrementalAlterConfigs
  (Quix reads it to configure the changelog topics and fails with `KeyError:
  'retention.ms'` without it; Tansu refuses the legacy AlterConfigs), and the consumer
  gets `session.timeout.ms=10000` (Tansu holds a JoinGroup for about half of it).

Counts processed messages with `on_message_processed` and stops the app once `--events`
have been processed (or after `--idle-s` without any). The clock runs from the first
processed message to the last (steady state); start-up and the final commit are
reported apart. Peak RSS is this process's VmHWM. Writes one JSON object to `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)
from quixstreams import Application
from quixstreams.dataframe.windows import Count, Max, Mean, Sum
from quixstreams.models.serializers import Deserializer

HOPPING = [  # name, duration, hop
    ("1h", timedelta(hours=1), timedelta(minutes=1)),
    ("1d", timedelta(days=1), timedelta(hours=1)),
    ("7d", timedelta(days=7), timedelta(hours=1)),
]
BAD: dict[str, Any] = {"bad": True}


class EventDeserializer(Deserializer):
    """JSON -> {"amount", "ts"}; anything the worker would dead-letter -> BAD."""

    def __call__(self, value: bytes, ctx: Any) -> dict[str, Any]:
        try:
            event = orjson.loads(value)
            if not event.get("customer_id"):
                return BAD
            return {"amount": float(event["amount"]), "ts": float(event["ts"])}
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return BAD


def event_time_ms(value: dict[str, Any], headers: Any, timestamp: int, kind: Any) -> int:
    ts = value.get("ts")
    return int(ts * 1000) if ts is not None else timestamp


def set_retention(broker: str, topic: str, retention_ms: str = "-1") -> None:
    admin = AdminClient({"bootstrap.servers": broker})
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", retention_ms, incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--sliding", action="store_true")
    parser.add_argument("--no-changelog", action="store_true")
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    started = time.perf_counter()
    set_retention(args.broker, args.topic)
    n = args.events
    state: dict[str, Any] = {"processed": 0, "first": None, "last": None, "late": 0}

    def processed(topic: str, partition: int, offset: int) -> None:
        state["processed"] += 1
        if state["first"] is None:
            state["first"] = time.perf_counter()
        if state["processed"] >= n:
            state["last"] = time.perf_counter()
            app.stop()

    def on_late(*_: Any) -> bool:
        state["late"] += 1
        return False  # counted, not logged

    kind = "sliding" if args.sliding else "hopping"
    app = Application(
        broker_address=args.broker,
        consumer_group=f"bench-quix-{kind}-{os.getpid()}-{time.time_ns()}",
        auto_offset_reset="earliest",
        consumer_extra_config={"session.timeout.ms": 10_000},
        state_dir=args.state_dir,
        use_changelog_topics=not args.no_changelog,
        on_message_processed=processed,
        loglevel="WARNING",
    )
    topic = app.topic(
        args.topic,
        key_deserializer="str",
        value_deserializer=EventDeserializer(),
        timestamp_extractor=event_time_ms,
    )
    sdf = app.dataframe(topic)
    sdf = sdf.filter(lambda value: "bad" not in value)
    for name, duration, hop in HOPPING:
        if args.sliding:
            window = sdf.sliding_window(duration, name=f"amount_{name}", on_late=on_late)
        else:
            window = sdf.hopping_window(duration, hop, name=f"amount_{name}", on_late=on_late)
        window.agg(count=Count(), sum=Sum("amount"), mean=Mean("amount"), max=Max("amount")).final()
    app.run(timeout=args.idle_s)
    stopped = time.perf_counter()
    done, first, last = state["processed"], state["first"], state["last"]
    if first is None or last is None or done < n:
        raise SystemExit(f"Quix processed {done} of {n} events of {args.topic}")
    result = {
        "events": done,
        "windows": kind,
        "features": 4 * len(HOPPING),
        "changelog_topics": not args.no_changelog,
        "late_window_updates": state["late"],
        "startup_s": first - started,
        "steady_s": last - first,
        "final_commit_s": stopped - last,
        "events_per_s": (done - 1) / (last - first),
        "end_to_end_events_per_s": done / (stopped - started),
        "peak_rss_mib": peak_rss_mib(),
    }
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
