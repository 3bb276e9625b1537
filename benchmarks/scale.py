"""Scale-out benchmark: ingest events/s with 1, 2 and 3 worker processes in one group.

    .venv/bin/python benchmarks/scale.py --events 200000
    .venv/bin/python benchmarks/scale.py --events 200000 --workers 1,2,3 --record

The example definitions restricted to the views keyed by the topic's key (customer_txn,
22 features), on a topic of 6 partitions: the partition-parallel path. (merchant_txn is
exact with several workers too, but every worker writes its entities, so its cost
depends on write collisions; tests/integration/test_foreign_key_views.py covers it.)
For each worker count, the events go to a fresh topic (and fresh view names) first;
then the workers start together and the clock runs from the first committed batch to
the last (steady state). Redis commands per event come from INFO
commandstats around the run. Results are appended to benchmarks/RESULTS.md with
`--record`; RESULTS.md explains what a 2-core machine can and cannot show.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import redis
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import events_file  # noqa: E402
from feature_service.definitions import Registry, load_definitions  # noqa: E402
from feature_service.embedded import EmbeddedStack, ManagedProcess  # noqa: E402
from feature_service.online.redis_layout import stats_key  # noqa: E402
from feature_service.stream.event_files import read_event_messages  # noqa: E402
from feature_service.stream.producer import produce_messages  # noqa: E402
from feature_service.stream.topics import ensure_topics  # noqa: E402

PARTITIONS = 6


def key_aligned_definitions(folder: Path, tag: str) -> tuple[Path, Registry]:
    """The example definitions, views keyed by the topic key only, on a fresh topic."""
    spec = yaml.safe_load((ROOT / "definitions" / "transactions.yaml").read_text())
    source = spec["sources"][0]
    source.update(name=f"tx_{tag}", topic=f"tx-{tag}", partitions=PARTITIONS)
    key_entity = next(e["name"] for e in spec["entities"] if e["join_key"] == source["key"])
    # Fresh view names too: each run starts from empty online state.
    spec["feature_views"] = [
        {**v, "name": f"{v['name']}_{tag}", "source": source["name"]}
        for v in spec["feature_views"]
        if v["entity"] == key_entity
    ]
    spec["feature_services"] = []
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "defs.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder, load_definitions(folder)


def redis_calls(client: redis.Redis) -> dict[str, int]:
    """Calls per command so far (commands run inside scripts included)."""
    stats = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def run(stack: EmbeddedStack, workers: int, n: int, path: Path, work: Path) -> dict:
    definitions, registry = key_aligned_definitions(work / f"defs-{workers}", f"w{workers}")
    source = next(iter(registry.sources.values()))
    asyncio.run(ensure_topics(stack.broker.bootstrap, registry))
    messages = list(read_event_messages(path, source.key))
    asyncio.run(produce_messages(stack.broker.bootstrap, source, messages))
    del messages
    client = redis.Redis.from_url(stack.redis.url)
    calls_before = redis_calls(client)
    env = stack.env()
    env.update(FS_DEFINITIONS=str(definitions), FS_OFFLINE_URI=str(work / f"offline-{workers}"))
    argv = [sys.executable, "-m", "feature_service.cli.main", "worker"]
    procs = [
        ManagedProcess(f"worker-{i}", argv, work / f"worker-{workers}-{i}.log", env=env).start()
        for i in range(workers)
    ]
    started = time.perf_counter()
    first: tuple[float, int] | None = None
    done = 0
    try:
        while done < n:
            raw = client.hgetall(stats_key(source.name))
            done = int(raw.get(b"events", 0)) + int(raw.get(b"dlq", 0))
            if first is None and done:
                first = (time.perf_counter(), done)
            for proc in procs:
                if not proc.alive():
                    raise SystemExit(f"{proc.name} died:\n{proc.log_tail(30)}")
            time.sleep(0.05)
        finished = time.perf_counter()
    finally:
        for proc in procs:
            proc.stop(timeout=30)
    after = redis_calls(client)
    by_command = {k: v - calls_before.get(k, 0) for k, v in after.items() if k != "info"}
    by_command = {k: v for k, v in by_command.items() if v}
    calls = sum(by_command.values())
    flushes = int(client.hget(stats_key(source.name), "flushes") or 0)
    assert first is not None
    t_first, n_first = first
    steady = finished - t_first
    return {
        "workers": workers,
        "events": n,
        "startup_s": round(t_first - started, 2),
        "steady_s": round(steady, 2),
        "events_per_s": round((n - n_first) / steady) if steady > 0 else None,
        "end_to_end_events_per_s": round(n / (finished - started)),
        "redis_commands_per_event": round(calls / n, 4),
        "events_per_flush": round(n / flushes) if flushes else None,
        "redis_calls": dict(sorted(by_command.items(), key=lambda kv: -kv[1])[:8]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--workers", default="1,2,3", help="comma-separated worker counts")
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    args = parser.parse_args()
    path = events_file(args.events, ROOT / "stores" / "bench")
    counts = [int(c) for c in args.workers.split(",")]
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="fs-scale-") as tmp,
        EmbeddedStack(Path(tmp) / "stores") as stack,
    ):
        for workers in counts:
            load = os.getloadavg()
            result = run(stack, workers, args.events, path, Path(tmp))
            result["load_avg_before"] = [round(x, 2) for x in load]
            results.append(result)
            print(json.dumps(result), flush=True)
    if args.record:
        record(args, results)


def record(args: argparse.Namespace, results: list[dict]) -> None:
    lines = [
        "",
        f"### Scale-out, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}. Command: `.venv/bin/python benchmarks/scale.py "
        f"--events {args.events} --workers {args.workers} --record`.",
        "",
        "| workers | events/s (steady) | end to end | start-up | Redis commands/event "
        "| events/flush | load avg before |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['workers']} | {r['events_per_s']:,} | {r['end_to_end_events_per_s']:,} "
            f"| {r['startup_s']} s | {r['redis_commands_per_event']} | {r['events_per_flush']:,} "
            f"| {' '.join(str(x) for x in r['load_avg_before'])} |"
        )
    with (ROOT / "benchmarks" / "RESULTS.md").open("a") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
