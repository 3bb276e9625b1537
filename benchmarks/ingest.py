"""Ingest benchmark: events/s from the topic to Redis + Parquet, one worker process.

    .venv/bin/python benchmarks/ingest.py --events 1000000
    .venv/bin/python benchmarks/ingest.py --events 200000 --profile /tmp/worker.svg

Uses the example definitions (definitions/transactions.yaml, 2 views, 32 features) and
events from definitions/generate_sample.py (10k customers, 2k merchants, 30 days). The
events are produced first; then a worker starts and the clock runs from its first
committed batch to the last (steady state; start-up is reported apart). Peak RSS is the
worker's VmHWM. In the same run, a plain Faust agent updating windowed Tables per event
(count and sum of amount per customer, tumbling 1h) reads a slice of the same events,
for the ratio. Results are appended to benchmarks/RESULTS.md with `--record`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from definitions.generate_sample import generate_events, write_events  # noqa: E402
from feature_service.definitions import load_definitions  # noqa: E402
from feature_service.embedded import EmbeddedStack, ManagedProcess  # noqa: E402
from feature_service.online.redis_layout import stats_key  # noqa: E402
from feature_service.stream.event_files import read_event_messages  # noqa: E402
from feature_service.stream.producer import produce_messages  # noqa: E402
from feature_service.stream.topics import ensure_topics  # noqa: E402

DEFINITIONS = ROOT / "definitions"


def events_file(n: int, cache: Path) -> Path:
    path = cache / f"transactions-{n}.jsonl"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        events = generate_events(n, seed=7, days=30, customers=10_000, merchants=2_000)
        write_events(events, path)
    return path


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_worker(stack: EmbeddedStack, n: int, offline: Path, profile: str | None) -> dict:
    env = stack.env()
    env.update(FS_DEFINITIONS=str(DEFINITIONS), FS_OFFLINE_URI=str(offline))
    argv = [sys.executable, "-m", "feature_service.cli.main", "worker"]
    worker = ManagedProcess("worker", argv, offline.parent / "worker.log", env=env).start()
    spy = None
    client = redis.Redis.from_url(stack.redis.url)
    started = time.perf_counter()
    first = None
    rss = 0.0
    done = 0
    try:
        while done < n:
            raw = client.hgetall(stats_key("transactions"))
            done = int(raw.get(b"events", 0)) + int(raw.get(b"dlq", 0))
            if first is None and done:
                first = (time.perf_counter(), done)
                if profile:  # attach once the worker is busy; raw = collapsed stacks
                    fmt = "raw" if profile.endswith(".txt") else "flamegraph"
                    spy = subprocess.Popen(
                        [
                            str(Path(sys.executable).parent / "py-spy"),
                            "record",
                            "--pid",
                            str(worker.pid),
                            "-o",
                            profile,
                            "-f",
                            fmt,
                            "--rate",
                            "100",
                            "--duration",
                            "20",
                            "--nonblocking",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
            rss = max(rss, peak_rss_mib(worker.pid))  # type: ignore[arg-type]
            if not worker.alive():
                raise SystemExit(f"worker died:\n{worker.log_tail(30)}")
            time.sleep(0.05)
        finished = time.perf_counter()
        rss = max(rss, peak_rss_mib(worker.pid))  # type: ignore[arg-type]
    finally:
        if spy is not None:
            spy.wait(timeout=60)
        worker.stop(timeout=30)
    assert first is not None
    t_first, n_first = first
    return {
        "events": n,
        "startup_s": t_first - started,
        "steady_s": finished - t_first,
        "events_per_s": (n - n_first) / (finished - t_first),
        "end_to_end_events_per_s": n / (finished - started),
        "peak_rss_mib": rss,
    }


FAUST_BASELINE = """
import json, os, sys, time
import faust
n = int(os.environ["BENCH_N"])
app = faust.App("bench-plain-" + os.environ["BENCH_TAG"],
                broker="kafka://" + os.environ["FS_BROKER_URL"],
                web_enabled=False, web_host="127.0.0.1", broker_rebalance_timeout=4,
                broker_session_timeout=4, consumer_auto_offset_reset="earliest",
                store="memory://", topic_partitions=3)
topic = app.topic(os.environ["BENCH_TOPIC"], value_serializer="raw")
counts = app.Table("count_1h", default=int).tumbling(3600, expires=7200)
sums = app.Table("sum_1h", default=float).tumbling(3600, expires=7200)
state = {"n": 0, "t0": None}

@app.agent(topic)
async def process(stream):
    async for value in stream:
        if state["t0"] is None:
            state["t0"] = time.perf_counter()
        state["n"] += 1
        try:
            event = json.loads(value)
            key, amount = event["customer_id"], float(event["amount"])
        except Exception:
            key = amount = None
        if key is not None:
            counts[key] += 1
            sums[key] += amount
        if state["n"] >= n:
            elapsed = time.perf_counter() - state["t0"]
            with open(os.environ["BENCH_OUT"], "w") as out:
                json.dump({"events": n, "seconds": elapsed, "events_per_s": n / elapsed}, out)
            os._exit(0)

if __name__ == "__main__":
    sys.argv = ["bench", "worker", "-l", "warn", "--without-web"]
    app.main()
"""


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


def run_faust_baseline(stack: EmbeddedStack, path: Path, n: int, work: Path) -> dict:
    registry = load_definitions(DEFINITIONS)
    source = registry.sources["transactions"]
    topic = f"bench-plain-{os.getpid()}"
    source_copy = type(source)(**{**source.__dict__, "topic": topic})
    messages = []
    for message in read_event_messages(path, source.key):
        messages.append(message)
        if len(messages) >= n:
            break
    asyncio.run(create_topic(stack.broker.bootstrap, topic, source.partitions))
    asyncio.run(produce_messages(stack.broker.bootstrap, source_copy, messages))
    script = work / "plain_faust.py"
    script.write_text(FAUST_BASELINE)
    out = work / "plain.json"
    env = stack.env()
    env.update(
        BENCH_N=str(len(messages)),
        BENCH_TOPIC=topic,
        BENCH_OUT=str(out),
        BENCH_TAG=str(os.getpid()),
    )
    with (work / "plain.log").open("w") as log:
        subprocess.run(
            [sys.executable, str(script)],
            env=env,
            cwd=work,
            timeout=3600,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if not out.exists():
        log_tail = (work / "plain.log").read_text()[-3000:]
        raise SystemExit("plain Faust baseline failed:\n" + log_tail)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--baseline-events", type=int, default=30_000)
    parser.add_argument("--profile", help="py-spy flame graph of the worker to this file")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    args = parser.parse_args()

    path = events_file(args.events, ROOT / "stores" / "bench")
    registry = load_definitions(DEFINITIONS)
    source = registry.sources["transactions"]
    with (
        tempfile.TemporaryDirectory(prefix="fs-bench-") as tmp,
        EmbeddedStack(Path(tmp) / "stores") as stack,
    ):
        work = Path(tmp)
        asyncio.run(ensure_topics(stack.broker.bootstrap, registry))
        t0 = time.perf_counter()
        messages = list(read_event_messages(path, source.key))
        asyncio.run(produce_messages(stack.broker.bootstrap, source, messages))
        produce_s = time.perf_counter() - t0
        del messages
        ours = run_worker(stack, args.events, work / "offline", args.profile)
        ours["produce_s"] = produce_s
        print(json.dumps({"feature-service": ours}, indent=2))
        plain = None
        if not args.no_baseline and not args.profile:
            plain = run_faust_baseline(stack, path, args.baseline_events, work)
            print(json.dumps({"plain Faust windowed Tables": plain}, indent=2))
    if args.record:
        record(args, ours, plain)


def record(args: argparse.Namespace, ours: dict, plain: dict | None) -> None:
    lines = [
        "",
        f"### Ingest, {datetime.now(UTC):%Y-%m-%d}",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}. "
        f"Command: `.venv/bin/python benchmarks/ingest.py --events {args.events} --record`.",
        "",
        "| what | events | events/s | peak RSS |",
        "|---|---|---|---|",
        f"| feature-service worker, example definitions (2 views, 32 features), steady state "
        f"| {ours['events']:,} | {ours['events_per_s']:,.0f} | {ours['peak_rss_mib']:.0f} MiB |",
        f"| same, end to end including start-up ({ours['startup_s']:.1f} s) "
        f"| {ours['events']:,} | {ours['end_to_end_events_per_s']:,.0f} | |",
    ]
    if plain:
        ratio = ours["events_per_s"] / plain["events_per_s"]
        lines.append(
            f"| plain Faust agent, per-event windowed Tables (count + sum, tumbling 1h) "
            f"| {plain['events']:,} | {plain['events_per_s']:,.0f} | |"
        )
        lines += ["", f"Ratio: {ratio:.1f}x the plain Faust agent."]
    with (ROOT / "benchmarks" / "RESULTS.md").open("a") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
