"""The floor: a bare aiokafka consumer that only reads and parses the events of a topic.

    python benchmarks/peers/floor_aiokafka.py --broker HOST:PORT --topic transactions \
        --events 200000 --out floor.json

A fresh consumer group (no committed offsets, `auto_offset_reset=earliest`), no auto
commit and no commit at all, `getmany()` batches; each record's value goes through
`orjson.loads` (a value that is not JSON is counted too, as the worker counts its
dead letters). Stops once it has read `--events` records, or after `--idle-s` without
any. The clock runs from the first batch to the last (steady state, as for the worker);
start-up (group join, first fetch) is reported apart. Peak RSS is this process's VmHWM.
Writes one JSON object to `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def consume(broker: str, topic: str, n: int, idle_s: float) -> dict:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker,
        group_id=f"bench-floor-{os.getpid()}-{time.time_ns()}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=10_000,  # Tansu holds a JoinGroup for ~half of it
        rebalance_timeout_ms=4_000,
    )
    started = time.perf_counter()
    await consumer.start()
    read = bad = 0
    first: tuple[float, int] | None = None
    last = started
    try:
        while read < n:
            batches = await consumer.getmany(timeout_ms=1000)
            now = time.perf_counter()
            if not batches:
                if now - last > idle_s:
                    break
                continue
            for records in batches.values():
                for record in records:
                    try:
                        orjson.loads(record.value)
                    except orjson.JSONDecodeError:
                        bad += 1
                read += len(records)
            if first is None:
                first = (now, read)  # the first batch is start-up: not in the steady clock
            last = time.perf_counter()
    finally:
        await consumer.stop()
    if first is None or read < n:
        raise SystemExit(f"read {read} of {n} events of {topic}")
    t_first, n_first = first
    return {
        "events": read,
        "not_json": bad,
        "startup_s": t_first - started,
        "steady_s": last - t_first,
        "events_per_s": (read - n_first) / (last - t_first),
        "end_to_end_events_per_s": read / (last - started),
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = asyncio.run(consume(args.broker, args.topic, args.events, args.idle_s))
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
