"""Ingest benchmark: events/s from the topic to Redis + Parquet, one worker process.

    .venv/bin/python benchmarks/ingest.py --events 1000000
    .venv/bin/python benchmarks/ingest.py --events 200000 --quix-events 20000
    .venv/bin/python benchmarks/ingest.py --events 200000 --profile /tmp/worker.svg

Uses the example definitions (definitions/transactions.yaml, 3 views, 41 aggregated
features) and events from definitions/generate_sample.py (10k customers, 2k merchants,
30 days; cached in stores/bench/). The events are produced first; then a worker starts and the clock
runs from its first committed batch to the last (steady state; start-up is reported
apart). Peak RSS is the worker's VmHWM.

After the worker has stopped, the bytes its state takes in Redis (`"redis"` in its
result): INFO memory `used_memory` and `used_memory_dataset` (and `used_memory` of the
empty Redis before the worker), the keys of each view (SCAN MATCH `fs:v:{*}:<view>`),
`MEMORY USAGE <key> SAMPLES 0` over a random sample of `--redis-sample` keys per view
-> mean bytes per entity (whatever the Redis type of the keys: their types are
reported), and `bytes_per_event` = used_memory / events.

Then, in the same run and one at a time (the box has 2 cores), the peers, each in a
subprocess reading the same events, with its own events/s and peak RSS:
- the floor (`--no-floor` skips it): a bare aiokafka consumer, fresh group, `getmany()`
  batches, no auto commit, that only reads and `orjson.loads` every event of the
  worker's topic (benchmarks/peers/floor_aiokafka.py);
- a plain Faust agent updating windowed Tables per event (count and sum of amount per
  customer, tumbling 1h) over a slice of `--baseline-events` (`--no-baseline`);
- Quix Streams 3.28 in its own venv `.venv-quix` (benchmarks/quix_env.py, created on
  first use), 12 features per customer_id with hopping windows (count/sum/mean/max of
  amount over 1h hop 1 min, 1d hop 1h, 7d hop 1h) over the first `--quix-events` of the
  worker's topic (`--no-quix`; `--quix-sliding` adds a run with sliding windows of the
  same lengths; `--quix-no-changelog` turns Quix's changelog topics off). RocksDB state,
  changelog topics on, `.final()` emission, grace 0, at-least-once: the choices and the
  Tansu settings they need are in benchmarks/peers/quix_windows.py.
`--profile` records the worker only (py-spy slows it): the peers are skipped.

`--format avro` (or `protobuf`, `jsonschema`; repeatable) then runs the worker again in
the same run, on the same events written in that format (bare payloads of a schema file
made from the source's schema: the decoding cost, without a registry's frame), on a
fresh Redis and topic; `"ratios"` gives its events/s as % of JSON's.

Last, `"ratios"`: ours / plain Faust, ours / Quix, ours as % of the floor (steady
events/s each). Everything is printed as it comes, then once more as one JSON object;
`--json PATH` writes that object to a file. Results are appended to
benchmarks/RESULTS.md with `--record`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.quix_env import quix_python  # noqa: E402
from definitions.generate_sample import generate_events, write_events  # noqa: E402
from feature_service.definitions import load_definitions  # noqa: E402
from feature_service.embedded import EmbeddedStack, ManagedProcess  # noqa: E402
from feature_service.online.redis_layout import entity_keys_pattern, stats_key  # noqa: E402
from feature_service.stream.event_files import read_event_messages  # noqa: E402
from feature_service.stream.producer import produce_messages  # noqa: E402
from feature_service.stream.topics import ensure_topics  # noqa: E402

DEFINITIONS = ROOT / "definitions"
PEERS = ROOT / "benchmarks" / "peers"
OURS = "feature-service"
PLAIN = "plain Faust windowed Tables"
FLOOR = "bare aiokafka consumer (read + orjson)"
QUIX = "Quix Streams hopping windows (12 features)"
QUIX_SLIDING = "Quix Streams sliding windows (12 features)"


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


def run_worker(
    stack: EmbeddedStack,
    n: int,
    offline: Path,
    profile: str | None,
    definitions: Path = DEFINITIONS,
) -> dict:
    env = stack.env()
    env.update(FS_DEFINITIONS=str(definitions), FS_OFFLINE_URI=str(offline))
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
        "flushes": int(raw.get(b"flushes", 0)),
        "last_flush_ms": float(raw.get(b"last_flush_ms", 0)),
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
            rss = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
            peak = int(rss[0].split()[1]) / 1024 if rss else None
            with open(os.environ["BENCH_OUT"], "w") as out:
                json.dump({"events": n, "seconds": elapsed, "events_per_s": n / elapsed,
                           "peak_rss_mib": peak}, out)
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


def run_peer(argv: list[str], out: Path, log: Path, what: str, timeout: float) -> dict:
    """Run one peer program to its end; its result is the JSON it wrote to `out`."""
    with log.open("w") as stream:
        subprocess.run(
            argv, cwd=out.parent, timeout=timeout, stdout=stream, stderr=subprocess.STDOUT
        )
    if not out.exists():
        raise SystemExit(f"{what} failed:\n" + log.read_text()[-3000:])
    return json.loads(out.read_text())


def run_floor(stack: EmbeddedStack, topic: str, n: int, work: Path) -> dict:
    out = work / "floor.json"
    argv = [sys.executable, str(PEERS / "floor_aiokafka.py"), "--broker", stack.broker.bootstrap]
    argv += ["--topic", topic, "--events", str(n), "--out", str(out)]
    return run_peer(argv, out, work / "floor.log", "the bare aiokafka consumer", 1800)


def run_quix(
    stack: EmbeddedStack, topic: str, n: int, work: Path, sliding: bool, changelog: bool
) -> dict:
    kind = "sliding" if sliding else "hopping"
    out = work / f"quix-{kind}.json"
    argv = [quix_python(ROOT), str(PEERS / "quix_windows.py"), "--broker", stack.broker.bootstrap]
    argv += ["--topic", topic, "--events", str(n), "--out", str(out)]
    argv += ["--state-dir", str(work / f"quix-{kind}-state")]
    argv += ["--sliding"] if sliding else []
    argv += [] if changelog else ["--no-changelog"]
    return run_peer(argv, out, work / f"quix-{kind}.log", f"Quix Streams ({kind})", 7200)


def redis_usage(url: str, views: list[str], events: int, sample: int, empty: int) -> dict:
    """Bytes of the worker's state in Redis: in all, per event, per entity of each view.

    MEMORY USAGE works on a key of any type (a hash today, maybe a string tomorrow); the
    types met in the sample are reported with it.
    """
    client = redis.Redis.from_url(url)
    memory = client.info("memory")
    result: dict = {
        "used_memory_bytes": int(memory["used_memory"]),
        "used_memory_dataset_bytes": int(memory["used_memory_dataset"]),
        "used_memory_empty_bytes": empty,
        "events": events,
        "bytes_per_event": int(memory["used_memory"]) / events,
        "dataset_bytes_per_event": int(memory["used_memory_dataset"]) / events,
        "keys": int(client.dbsize()),
        "views": {},
    }
    rng = random.Random(7)
    for view in views:
        keys = list(client.scan_iter(match=entity_keys_pattern(view), count=1000))
        chosen = rng.sample(keys, min(sample, len(keys)))
        pipe = client.pipeline(transaction=False)
        for key in chosen:
            pipe.memory_usage(key, samples=0)
            pipe.type(key)
        replies = pipe.execute()
        sizes = [int(size) for size in replies[0::2] if size is not None]
        types: dict[str, int] = {}
        for kind in replies[1::2]:
            name = kind.decode() if isinstance(kind, bytes) else str(kind)
            types[name] = types.get(name, 0) + 1
        result["views"][view] = {
            "keys": len(keys),
            "sampled": len(sizes),
            "types": types,
            "bytes_per_entity": sum(sizes) / len(sizes) if sizes else None,
            "bytes_per_entity_max": max(sizes) if sizes else None,
            "bytes_all_keys_est": sum(sizes) / len(sizes) * len(keys) if sizes else None,
        }
    client.close()
    return result


def ratios(results: dict) -> dict:
    """Steady events/s of ours against each peer that ran."""
    ours = results[OURS]["events_per_s"]
    out: dict = {}
    if results.get(PLAIN):
        out["ours_over_plain_faust"] = ours / results[PLAIN]["events_per_s"]
    if results.get(QUIX):
        out["ours_over_quix_hopping"] = ours / results[QUIX]["events_per_s"]
    if results.get(QUIX_SLIDING):
        out["ours_over_quix_sliding"] = ours / results[QUIX_SLIDING]["events_per_s"]
    if results.get(FLOOR):
        out["ours_pct_of_floor"] = 100 * ours / results[FLOOR]["events_per_s"]
    for key, value in results.items():
        if key.startswith(f"{OURS} ("):  # a --format run: its events/s as % of JSON's
            kind = key.removeprefix(OURS).strip(" ()")
            for figure, name in (("events_per_s", "pct_of_json"), ("end_to_end_events_per_s",
                                 "end_to_end_pct_of_json")):  # fmt: skip
                if results[OURS][figure]:
                    out[f"{kind}_{name}"] = 100 * value[figure] / results[OURS][figure]
    return out


_AVRO_TYPES = {"string": "string", "float": "double", "int": "long", "bool": "boolean"}
_PROTO_TYPES = {"string": "string", "float": "double", "int": "int64", "bool": "bool"}
_JSON_TYPES = {"string": "string", "float": "number", "int": "integer", "bool": "boolean"}


def format_definitions(kind: str, work: Path) -> Path:
    """The example definitions with the transactions source written in `kind` (a schema
    file made from its schema; topic `transactions-<kind>`), in a folder of `work`."""
    folder = work / f"definitions-{kind}"
    folder.mkdir(parents=True, exist_ok=True)
    source = load_definitions(DEFINITIONS).sources["transactions"]
    schema = source.schema
    if kind == "avro":
        time_type = {"type": "long", "logicalType": "timestamp-micros"}
        fields = [
            {"name": c, "type": time_type if t == "timestamp" else ["null", _AVRO_TYPES[t]]}
            for c, t in schema.items()
        ]
        text = json.dumps({"type": "record", "name": "Transaction", "fields": fields})
        file = "transactions.avsc"
    elif kind == "protobuf":
        types = {
            c: "google.protobuf.Timestamp" if t == "timestamp" else f"optional {_PROTO_TYPES[t]}"
            for c, t in schema.items()
        }
        lines = [f"  {types[c]} {c} = {i};" for i, c in enumerate(schema, start=1)]
        text = 'syntax = "proto3";\nimport "google/protobuf/timestamp.proto";\n'
        text += "message Transaction {\n" + "\n".join(lines) + "\n}\n"
        file = "transactions.proto"
    else:
        properties = {
            c: {"type": "number"} if t == "timestamp" else {"type": [_JSON_TYPES[t], "null"]}
            for c, t in schema.items()
        }
        text = json.dumps({"type": "object", "properties": properties})
        file = "transactions.json"
    (folder / file).write_text(text)
    yaml_text = (DEFINITIONS / "transactions.yaml").read_text()
    yaml_text = yaml_text.replace(
        "    topic: transactions\n",
        f"    topic: transactions-{kind}\n    format: {kind}\n    schema_file: {file}\n",
        1,
    )
    (folder / "transactions.yaml").write_text(yaml_text)
    return folder


def run_format(stack: EmbeddedStack, kind: str, path: Path, n: int, work: Path) -> dict:
    """The worker on the same events written in `kind`, on a fresh Redis and topic."""
    from feature_service.stream.event_files import encode_event_messages

    folder = format_definitions(kind, work)
    registry = load_definitions(folder)
    source = registry.sources["transactions"]
    asyncio.run(ensure_topics(stack.broker.bootstrap, registry))
    t0 = time.perf_counter()
    lines = list(read_event_messages(path, source.key))
    messages, unfit = asyncio.run(encode_event_messages(source, lines))
    encode_s = time.perf_counter() - t0
    asyncio.run(produce_messages(stack.broker.bootstrap, source, messages))
    del messages, lines
    redis.Redis.from_url(stack.redis.url).flushall()  # the JSON run's state and offsets
    result = run_worker(stack, n, work / f"offline-{kind}", None, folder)
    result.update(format=kind, encode_s=encode_s, not_encodable=len(unfit))
    return result


def show(key: str, value: dict) -> None:
    print(json.dumps({key: value}, indent=2), flush=True)


# The aggregations the product had before issue 24; `--kinds` adds or removes the others.
OLD_KINDS = frozenset(
    {
        "count",
        "sum",
        "mean",
        "min",
        "max",
        "std",
        "var",
        "first",
        "last",
        "count_distinct",
        "time_since_last",
        "skew",
    }
)
MORE_NEW_KINDS = [  # with the shipped example's 4 (last_k, frequent_k, ...): 10 new kinds
    {"name": "x_top_amounts_7d", "column": "amount", "aggregation": "top_k", "k": 3,
     "window": "7d"},
    {"name": "x_merchants_approx_7d", "column": "merchant_id",
     "aggregation": "approx_count_distinct", "window": "7d"},
    {"name": "x_amount_decayed_7d", "column": "amount", "aggregation": "decayed_sum",
     "half_life": "1d", "window": "7d"},
    {"name": "x_amount_kurtosis_7d", "column": "amount", "aggregation": "kurtosis",
     "window": "7d"},
    {"name": "x_last_merchants", "column": "merchant_id", "aggregation": "last_distinct_k",
     "k": 3},
    {"name": "x_category_histogram_1d", "column": "category", "aggregation": "histogram",
     "k": 5, "window": "1d"},
]  # fmt: skip


def definitions_of(kinds: str, work: Path, drop_views: Sequence[str] = ()) -> Path:
    """The example definitions (`shipped`), without the aggregations issue 24 added
    (`without-new`), or with 10 of them in customer_txn (`with-10-new`); without the
    views `drop_views` (and their entities)."""
    if kinds == "shipped" and not drop_views:
        return DEFINITIONS
    import yaml

    data = yaml.safe_load((DEFINITIONS / "transactions.yaml").read_text())
    dropped = [v for v in data["feature_views"] if v["name"] in drop_views]
    if len(dropped) != len(set(drop_views)):
        raise SystemExit(f"--drop-view: no such view among {drop_views}")
    data["feature_views"] = [v for v in data["feature_views"] if v not in dropped]
    used = {v["entity"] for v in data["feature_views"]}
    data["entities"] = [e for e in data["entities"] if e["name"] in used]
    for service in data.get("feature_services", []):
        service["features"] = [
            f for f in service["features"]
            if not isinstance(f, str) or f.split(":")[0] not in drop_views
        ]  # fmt: skip
    view = next(v for v in data["feature_views"] if v["name"] == "customer_txn")
    old = [f for f in view["features"] if f.get("aggregation", "sum") in OLD_KINDS]
    new = [f for f in view["features"] if f.get("aggregation", "sum") not in OLD_KINDS]
    kept = {f.get("name") for f in old} | {None}
    if kinds == "shipped":
        pass
    elif kinds == "without-new":
        view["features"] = old
        for service in data.get("feature_services", []):
            service["features"] = [
                f for f in service["features"]
                if not isinstance(f, str) or f.split(":")[1] in kept or f.startswith("merchant")
            ]  # fmt: skip
    else:
        assert len(new) + len(MORE_NEW_KINDS) == 10, [f["name"] for f in new]
        view["features"] = view["features"] + MORE_NEW_KINDS
    out = work / "-".join(["definitions", kinds, *drop_views])
    out.mkdir(parents=True, exist_ok=True)
    (out / "transactions.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    load_definitions(out)  # refuse a broken variant before any clock runs
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--baseline-events", type=int, default=30_000)
    parser.add_argument("--quix-events", type=int, default=20_000)
    parser.add_argument("--redis-sample", type=int, default=500, help="keys sampled per view")
    parser.add_argument("--profile", help="py-spy flame graph of the worker to this file")
    parser.add_argument("--no-baseline", action="store_true", help="skip the plain Faust agent")
    parser.add_argument("--no-floor", action="store_true", help="skip the bare consumer")
    parser.add_argument("--no-quix", action="store_true", help="skip Quix Streams")
    parser.add_argument("--quix-sliding", action="store_true", help="also Quix sliding windows")
    parser.add_argument("--quix-no-changelog", action="store_true")
    parser.add_argument("--json", help="write all results as one JSON object to this file")
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    parser.add_argument(
        "--format",
        action="append",
        default=[],
        choices=["avro", "protobuf", "jsonschema"],
        help="also run the worker on the events in this format (repeatable)",
    )
    parser.add_argument(
        "--kinds",
        choices=["shipped", "without-new", "with-10-new"],
        default="shipped",
        help="the example definitions as shipped, without issue 24's aggregations, or "
        "with 10 of them (the worker's definitions only)",
    )
    parser.add_argument(
        "--drop-view",
        action="append",
        default=[],
        help="leave this view of the example out (repeatable), e.g. customer_merchant to "
        "measure the two views the example had before its composite-key view",
    )
    args = parser.parse_args()

    path = events_file(args.events, ROOT / "stores" / "bench")
    registry = load_definitions(DEFINITIONS)
    source = registry.sources["transactions"]
    views = [v.name for v in registry.views_of_source(source.name) if v.name not in args.drop_view]
    quix_events = min(args.quix_events, args.events)
    peers = not args.profile
    if peers and not args.no_quix:
        quix_python(ROOT)  # create the venv before any clock runs
    load = os.getloadavg()[0]
    results: dict = {}
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
        empty = int(redis.Redis.from_url(stack.redis.url).info("memory")["used_memory"])
        definitions = definitions_of(args.kinds, work, args.drop_view)
        ours = run_worker(stack, args.events, work / "offline", args.profile, definitions)
        ours["kinds"] = args.kinds
        ours["dropped_views"] = args.drop_view
        ours["produce_s"] = produce_s
        ours["redis"] = redis_usage(stack.redis.url, views, args.events, args.redis_sample, empty)
        results[OURS] = ours
        show(OURS, ours)
        for kind in args.format:
            key = f"{OURS} ({kind})"
            results[key] = run_format(stack, kind, path, args.events, work)
            show(key, results[key])
        if peers and not args.no_floor:
            results[FLOOR] = run_floor(stack, source.topic, args.events, work)
            show(FLOOR, results[FLOOR])
        if peers and not args.no_baseline:
            results[PLAIN] = run_faust_baseline(stack, path, args.baseline_events, work)
            show(PLAIN, results[PLAIN])
        if peers and not args.no_quix:
            changelog = not args.quix_no_changelog
            results[QUIX] = run_quix(stack, source.topic, quix_events, work, False, changelog)
            show(QUIX, results[QUIX])
            if args.quix_sliding:
                results[QUIX_SLIDING] = run_quix(
                    stack, source.topic, quix_events, work, True, changelog
                )
                show(QUIX_SLIDING, results[QUIX_SLIDING])
    results["ratios"] = ratios(results)
    show("ratios", results["ratios"])
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.record:
        record(results, load)


def commit() -> str:
    try:
        argv = ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def record(results: dict, load: float) -> None:
    ours = results[OURS]
    command = " ".join([".venv/bin/python benchmarks/ingest.py", *sys.argv[1:]])
    lines = [
        "",
        f"### Ingest, {datetime.now(UTC):%Y-%m-%d}",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; load average before the run {load:.1f}. "
        f"Commit {commit()}. Command: `{command}`.",
        "",
        "| what | events | events/s | peak RSS |",
        "|---|---|---|---|",
        f"| feature-service worker, example definitions (3 views, 41 features), steady state "
        f"| {ours['events']:,} | {ours['events_per_s']:,.0f} | {ours['peak_rss_mib']:.0f} MiB |",
        f"| same, end to end including start-up ({ours['startup_s']:.1f} s) "
        f"| {ours['events']:,} | {ours['end_to_end_events_per_s']:,.0f} | |",
    ]
    rows = [
        (FLOOR, "bare aiokafka consumer, fresh group, `getmany()`, `orjson.loads` only"),
        (PLAIN, "plain Faust agent, per-event windowed Tables (count + sum, tumbling 1h)"),
        (QUIX, "Quix Streams 3.28, hopping windows (count/sum/mean/max, 1h/1min, 1d/1h, 7d/1h)"),
        (QUIX_SLIDING, "Quix Streams 3.28, sliding windows (count/sum/mean/max, 1h, 1d, 7d)"),
    ]
    for key, label in rows:
        peer = results.get(key)
        if peer:
            if "changelog_topics" in peer:
                label += ", RocksDB + changelog" if peer["changelog_topics"] else ", RocksDB"
            rss = f"{peer['peak_rss_mib']:.0f} MiB" if peer.get("peak_rss_mib") else ""
            lines.append(f"| {label} | {peer['events']:,} | {peer['events_per_s']:,.0f} | {rss} |")
    mem = ours["redis"]
    lines += [
        "",
        f"Redis after the worker: used_memory {mem['used_memory_bytes'] / 2**20:,.1f} MiB "
        f"(dataset {mem['used_memory_dataset_bytes'] / 2**20:,.1f} MiB, empty "
        f"{mem['used_memory_empty_bytes'] / 2**20:,.1f} MiB), "
        f"{mem['bytes_per_event']:,.0f} bytes per event.",
        "",
        "| view | keys | bytes per entity (MEMORY USAGE, mean of a sample) | types |",
        "|---|---|---|---|",
    ]
    for view, usage in mem["views"].items():
        per = usage["bytes_per_entity"]
        types = ", ".join(f"{t} {n}" for t, n in usage["types"].items())
        lines.append(
            f"| {view} | {usage['keys']:,} | "
            f"{'' if per is None else f'{per:,.0f}'} ({usage['sampled']} sampled) | {types} |"
        )
    ratio = results.get("ratios") or {}
    said = []
    if "ours_over_plain_faust" in ratio:
        said.append(f"{ratio['ours_over_plain_faust']:.1f}x the plain Faust agent")
    if "ours_over_quix_hopping" in ratio:
        said.append(f"{ratio['ours_over_quix_hopping']:.1f}x Quix (hopping)")
    if "ours_over_quix_sliding" in ratio:
        said.append(f"{ratio['ours_over_quix_sliding']:.1f}x Quix (sliding)")
    if "ours_pct_of_floor" in ratio:
        said.append(f"{ratio['ours_pct_of_floor']:.1f}% of the bare consumer")
    if said:
        lines += ["", "Ratios (steady events/s): " + "; ".join(said) + "."]
    with (ROOT / "benchmarks" / "RESULTS.md").open("a") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
