"""Point-in-time training sets: feature-service against Feast 0.67 on the same data.

    .venv/bin/python benchmarks/pit.py                   # ours and Feast, ~3 minutes
    .venv/bin/python benchmarks/pit.py --no-feast        # ours only
    .venv/bin/python benchmarks/pit.py --record          # also append to RESULTS.md
    .venv/bin/python benchmarks/pit.py --events 10000000 --rows 1000000 --no-feast \
        --views windowed --duckdb --repeat 1             # bucketed engine beside DuckDB
    .venv/bin/python benchmarks/pit.py ... --engine spark --master local[2]

What it does:

1. Generates `--events` events (default 1M) of `--entities` customers (10k, weighted
   lognormal(0, `--skew`), default 1; 0 is uniform) over `--days` days (30): an amount,
   a category and ten plain numbers `v0..v9`, and writes them as the worker's offline
   log (3 partitions, offsets, watermarks), plus
   an entity frame of `--rows` (100k) rows at random times (about 1% fall before
   their customer's first event) with a label column.
2. Ours, each in a fresh process (time and peak RSS of that process, imports
   excluded from the time): 20 windowed features (count/sum/mean/max/std over 1h, 1d,
   7d, 30d), and 10 `last` features (the latest `v0..v9` at or before each row: what
   Feast's point-in-time join computes).
   `--engine local` (default) is the bucketed engine (`offline/buckets.py`: the whole
   log in one process up to 2M events, else buckets in one process per core), `whole`
   the evaluator over the whole log in one process, `spark` the Spark engine
   (`--master`, default local[2]). Peak memory is sampled (every 0.1 s) over the
   process and all its descendants (workers, Spark's JVM and Python workers): the
   peak of their sum, and the peak of the largest one.
   `--duckdb`: DuckDB (`--duckdb-threads`, 2) computes the 20 windowed features over
   the same log files as one range join (`LEFT JOIN` on the key, `ts <= t` and the
   longest window's start; a `FILTER` per feature with the same window start
   `floor(t / hop) * hop - W`), in a fresh process; values compared with ours (counts
   exactly, floats within the parity tolerance, 1e-9 relative). The log has no late
   events, so DuckDB needs no lateness rule.
3. Feast 0.67 (its own venv `.venv-feast`, `benchmarks/feast_env.py`): a file offline
   store over the same events as one Parquet file, a feature view of `v0..v9`,
   `get_historical_features(entity_df, ...).to_df()` (Feast has no windowed
   aggregations in its offline store, so the comparison is on the 10 plain features).
   Both results are joined on the row id: rows Feast returns, values that differ.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from feast_env import feast_python  # noqa: E402

from feature_service.definitions import load_definitions  # noqa: E402
from feature_service.offline.event_log import EventLog  # noqa: E402

START = datetime(2026, 10, 1, tzinfo=UTC).timestamp()
PARTITIONS = 3
DEFINITIONS = """
entities:
  - {name: customer, join_key: customer_id}
sources:
  - name: bench
    topic: bench
    timestamp_field: ts
    partitions: 3
    schema: {customer_id: string, amount: float, category: string, ts: timestamp,
             v0: float, v1: float, v2: float, v3: float, v4: float,
             v5: float, v6: float, v7: float, v8: float, v9: float}
feature_views:
  - name: windowed
    source: bench
    entity: customer
    features:
      - {aggregation: count, windows: [1h, 1d, 7d, 30d]}
      - {column: amount, aggregations: [sum, mean, max, std], windows: [1h, 1d, 7d, 30d]}
  - name: latest
    source: bench
    entity: customer
    features:
""" + "".join(f"      - {{name: v{i}, column: v{i}, aggregation: last}}\n" for i in range(10))


def generate(
    work: Path, events: int, entities: int, days: int, rows: int, seed: int, skew: float = 1.0
) -> None:
    """The offline log, the definitions, the entity frame and Feast's event file.

    Customers are drawn with lognormal(0, `skew`) weights (0: uniform), for events and
    rows alike: busy customers have many events and many training rows."""
    rng = np.random.default_rng(seed)
    (work / "defs.yaml").write_text(DEFINITIONS)
    registry = load_definitions(work / "defs.yaml")
    source = registry.sources["bench"]
    weights = rng.lognormal(0, skew, entities)
    weights /= weights.sum()
    ent = rng.choice(entities, events, p=weights)
    ts = np.round(START + np.sort(rng.uniform(0, days * 86400, events)), 3)
    ids = np.array([f"c{i:05d}" for i in range(entities)], dtype=object)
    frame: dict[str, Any] = {
        "customer_id": ids[ent],
        "amount": np.round(rng.lognormal(3, 1.2, events), 2),
        "category": np.array(["grocery", "fuel", "travel", "online"], dtype=object)[
            rng.integers(0, 4, events)
        ],
        "ts": ts,
    }
    for i in range(10):
        frame[f"v{i}"] = np.round(rng.normal(0, 100, events), 4)
    log = EventLog(str(work / "offline"))
    partition = ent % PARTITIONS
    for p in range(PARTITIONS):
        idx = np.flatnonzero(partition == p)
        part = {k: v[idx] for k, v in frame.items()}
        part_ts = part["ts"]
        part["event_ts"] = part_ts
        part["_partition"] = np.full(idx.size, p, dtype=np.int32)
        part["_offset"] = np.arange(idx.size, dtype=np.int64)
        part["_watermark"] = np.concatenate(([np.nan], np.maximum.accumulate(part_ts)[:-1]))
        df = pd.DataFrame(part)
        for first in range(0, idx.size, 50_000):  # one file per fetched batch (and date)
            log.write_batch(source, p, first, df.iloc[first : first + 50_000])
    row_ent = rng.choice(entities, rows, p=weights)
    entity_df = pd.DataFrame(
        {
            "row_id": np.arange(rows),
            "customer_id": ids[row_ent],
            "event_timestamp": pd.to_datetime(
                np.round(START + rng.uniform(0, days * 86400, rows), 3), unit="s", utc=True
            ),
            "label": rng.integers(0, 2, rows),
        }
    )
    entity_df.to_parquet(work / "entity_df.parquet", index=False)
    feast_events = pd.DataFrame(
        {
            "customer_id": frame["customer_id"],
            "event_timestamp": pd.to_datetime(ts, unit="s", utc=True),
            **{f"v{i}": frame[f"v{i}"] for i in range(10)},
        }
    )
    feast_events.to_parquet(work / "feast_events.parquet", index=False)


class TreeMemory:
    """Samples the memory of this process and its descendants (every 0.1 s, from /proc):
    the peak of their sum and of the largest one, in MB. Each process counts its
    proportional set size (PSS: pages shared by forked workers divided among them, so a
    page is counted once; RSS where the kernel gives no PSS)."""

    def __init__(self) -> None:
        import threading

        self.total_mb = 0.0
        self.largest_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
        me = os.getpid()
        while not self._stop.is_set():
            parents: dict[int, int] = {}
            rss: dict[int, float] = {}
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    statm = Path(f"/proc/{entry}/statm").read_text().split()
                except OSError:
                    continue
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
                rss[int(entry)] = int(statm[1]) * page_mb
            tree, frontier = {me}, [me]
            while frontier:
                parent = frontier.pop()
                for pid, ppid in parents.items():
                    if ppid == parent and pid not in tree:
                        tree.add(pid)
                        frontier.append(pid)
            for pid in tree:
                try:
                    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
                except OSError:
                    continue
                for line in rollup.splitlines():
                    if line.startswith("Pss:"):
                        rss[pid] = int(line.split()[1]) / 1024
            sizes = [rss.get(pid, 0.0) for pid in tree]
            self.total_mb = max(self.total_mb, sum(sizes))
            self.largest_mb = max(self.largest_mb, max(sizes))
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_ours(
    work: Path, view: str, engine: str = "local", master: str = "local[2]"
) -> dict[str, Any]:
    """In this (fresh) process: one training set, its time and peak memory (`TreeMemory`:
    this process and its workers)."""
    from feature_service.offline.buckets import bucketed_historical_features
    from feature_service.offline.historical import get_historical_features

    registry = load_definitions(work / "defs.yaml")
    entity_df = pd.read_parquet(work / "entity_df.parquet")
    features = [f"{view}:{f.name}" for f in registry.feature_views[view].features]
    memory = TreeMemory()
    offline = str(work / "offline")
    extra: dict[str, Any] = {}
    if engine == "spark":
        from feature_service.offline.spark_engine import spark_historical_frame, spark_session

        began = time.perf_counter()
        spark = spark_session(master, "pit-bench")
        extra["spark_start_seconds"] = time.perf_counter() - began
        started = time.perf_counter()
        out = spark_historical_frame(spark, registry, offline, entity_df, features)
    elif engine == "whole":
        started = time.perf_counter()
        out = get_historical_features(registry, offline, entity_df, features)
    else:
        started = time.perf_counter()
        out = bucketed_historical_features(registry, offline, entity_df, features)
    seconds = time.perf_counter() - started
    memory.stop()
    out.to_parquet(work / f"ours_{view}.parquet", index=False)
    return {
        "seconds": seconds,
        "peak_rss_mb": memory.total_mb,
        "largest_process_mb": memory.largest_mb,
        "self_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": len(out),
        "features": len(features),
        "engine": engine,
        **extra,
    }


WINDOWS = {
    "1h": (3600, 60),
    "1d": (86400, 3600),
    "7d": (7 * 86400, 3600),
    "30d": (30 * 86400, 86400),
}
"""The windows of the `windowed` view and their default hops (DESIGN.md)."""


def duckdb_sql(work: Path) -> str:
    """The 20 windowed features as one DuckDB range join (see the module doc)."""
    longest = max(w for w, _ in WINDOWS.values())
    longest_hop = WINDOWS["30d"][1]
    columns = []
    for name, (w, hop) in WINDOWS.items():
        start = f"floor(r.t / {hop}) * {hop} - {w}"
        where = f"FILTER (WHERE e.event_ts >= {start})"
        columns += [
            f"count(e.event_ts) {where} AS count_{name}",
            f"sum(e.amount) {where} AS amount_sum_{name}",
            f"avg(e.amount) {where} AS amount_mean_{name}",
            f"max(e.amount) {where} AS amount_max_{name}",
            f"stddev_samp(e.amount) {where} AS amount_std_{name}",
        ]
    log = work / "offline" / "events" / "source=bench" / "*" / "*.parquet"
    return f"""
        CREATE TEMP TABLE r AS SELECT row_id, customer_id,
            (epoch_ns(event_timestamp) // 1000) / 1e6 AS t
            FROM read_parquet('{work / "entity_df.parquet"}');
        COPY (
            SELECT r.row_id, {", ".join(columns)}
            FROM r LEFT JOIN read_parquet('{log}') e
              ON e.customer_id = r.customer_id AND e.event_ts <= r.t
             AND e.event_ts >= floor(r.t / {longest_hop}) * {longest_hop} - {longest}
            GROUP BY r.row_id
        ) TO '{work / "duckdb_windowed.parquet"}' (FORMAT parquet);
    """


def run_duckdb(work: Path, threads: int) -> dict[str, Any]:
    """In this (fresh) process: DuckDB's training set, its time and peak memory."""
    import duckdb

    memory = TreeMemory()
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute(duckdb_sql(work))
    seconds = time.perf_counter() - started
    memory.stop()
    return {
        "seconds": seconds,
        "peak_rss_mb": memory.total_mb,
        "largest_process_mb": memory.largest_mb,
        "self_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": int(con.execute(
            f"SELECT count(*) FROM '{work / 'duckdb_windowed.parquet'}'").fetchone()[0]),  # type: ignore[index]
        "features": 20,
        "duckdb": duckdb.__version__,
    }  # fmt: skip


def compare_with_duckdb(work: Path) -> dict[str, Any]:
    """Values of DuckDB and ours that differ: counts exactly, floats by 1e-9 relative."""
    ours = pd.read_parquet(work / "ours_windowed.parquet").set_index("row_id").sort_index()
    theirs = pd.read_parquet(work / "duckdb_windowed.parquet").set_index("row_id").sort_index()
    differ = exact = 0
    for name in [c for c in theirs.columns if c in ours.columns]:
        a = ours[name].to_numpy(dtype=np.float64)
        b = theirs[name].to_numpy(dtype=np.float64, na_value=np.nan)
        both_nan = np.isnan(a) & np.isnan(b)
        close = np.isclose(a, b, rtol=1e-9, atol=0) if not name.startswith("count") else a == b
        differ += int((~(close | both_nan)).sum())
        exact += int(((a == b) | both_nan).sum())
    values = len(theirs) * 20
    return {"values": values, "values_differ": differ, "values_not_bit_equal": values - exact}


FEAST_SCRIPT = """
import json, resource, sys, time
from datetime import timedelta
from pathlib import Path
import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource
from feast.types import Float64
from feast.repo_config import RepoConfig

work = Path(sys.argv[1])
repo = work / "feast_repo"
repo.mkdir(exist_ok=True)
config = RepoConfig(
    project="pitbench",
    registry=str(repo / "registry.db"),
    provider="local",
    offline_store={"type": "file"},
    online_store={"type": "sqlite", "path": str(repo / "online.db")},
    entity_key_serialization_version=3,
)
store = FeatureStore(config=config)
customer = Entity(name="customer", join_keys=["customer_id"])
source = FileSource(path=str(work / "feast_events.parquet"), timestamp_field="event_timestamp")
view = FeatureView(
    name="latest", entities=[customer], ttl=timedelta(days=3650),
    schema=[Field(name=f"v{i}", dtype=Float64) for i in range(10)], source=source,
)
store.apply([customer, view])
entity_df = pd.read_parquet(work / "entity_df.parquet")
started = time.perf_counter()
out = store.get_historical_features(
    entity_df=entity_df, features=[f"latest:v{i}" for i in range(10)]
).to_df()
seconds = time.perf_counter() - started
out.to_parquet(work / "feast_latest.parquet", index=False)
print(json.dumps({"seconds": seconds, "rows": len(out), "features": 10,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def child(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{command[:3]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def compare_with_feast(work: Path) -> dict[str, Any]:
    ours = pd.read_parquet(work / "ours_latest.parquet").set_index("row_id")
    feast = pd.read_parquet(work / "feast_latest.parquet").set_index("row_id")
    common = feast.index.intersection(ours.index)
    names = [f"v{i}" for i in range(10)]
    a = ours.loc[common, names].to_numpy()
    b = feast.loc[common, names].to_numpy()
    differ = int((~((a == b) | (np.isnan(a) & np.isnan(b)))).any(axis=1).sum())
    missing = ours.index.difference(feast.index)
    ours_null = int(ours.loc[missing, "v0"].isna().sum())
    return {"feast_rows": len(feast), "rows_differ": differ, "dropped": len(missing),
            "dropped_null_in_ours": ours_null}  # fmt: skip


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--skew", type=float, default=1.0, help="sigma of lognormal customer weights; 0: uniform"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of ours; the best counts")
    parser.add_argument("--no-feast", action="store_true")
    parser.add_argument("--feast-python", help="Feast's interpreter (default: .venv-feast)")
    parser.add_argument("--record", action="store_true", help="append to RESULTS.md")
    parser.add_argument("--engine", choices=["local", "whole", "spark"], default="local")
    parser.add_argument("--master", default="local[2]", help="Spark master (--engine spark)")
    parser.add_argument("--views", default="windowed,latest", help="which of ours to run")
    parser.add_argument("--duckdb", action="store_true", help="DuckDB beside ours (windowed)")
    parser.add_argument("--duckdb-threads", type=int, default=2)
    parser.add_argument("--child", choices=["windowed", "latest", "duckdb"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "duckdb":
        print(json.dumps(run_duckdb(args.work, args.duckdb_threads)))
        return
    if args.child:
        print(json.dumps(run_ours(args.work, args.child, args.engine, args.master)))
        return

    with tempfile.TemporaryDirectory(prefix="pit-bench-") as tmp:
        work = Path(tmp)
        began = time.perf_counter()
        generate(work, args.events, args.entities, args.days, args.rows, args.seed, args.skew)
        print(f"generated {args.events:,} events, {args.rows:,} rows in "
              f"{time.perf_counter() - began:.1f} s", flush=True)  # fmt: skip
        me = [sys.executable, __file__, "--work", str(work), "--engine", args.engine,
              "--master", args.master, "--duckdb-threads", str(args.duckdb_threads),
              "--child"]  # fmt: skip
        results: dict[str, dict[str, Any]] = {}
        for view in args.views.split(","):
            runs = [child([*me, view]) for _ in range(args.repeat)]
            results[view] = min(runs, key=lambda r: r["seconds"])
            results[view]["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
            print(view, results[view], flush=True)
        if args.duckdb:
            results["duckdb"] = child([*me, "duckdb"])
            if "windowed" in results:
                results["duckdb"].update(compare_with_duckdb(work))
            print("duckdb", results["duckdb"], flush=True)
        if not args.no_feast:
            python = args.feast_python or feast_python(ROOT)
            script = work / "feast_bench.py"
            script.write_text(textwrap.dedent(FEAST_SCRIPT))
            results["feast"] = child([python, str(script), str(work)])
            results["feast"].update(compare_with_feast(work))
            print("feast", results["feast"], flush=True)
        report = render(args, results)
        print(report)
        if args.record:
            with (ROOT / "benchmarks" / "RESULTS.md").open("a") as out:
                out.write("\n" + report)


def render(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> str:
    day = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    flags = (
        (f" --events {args.events} --rows {args.rows}" if args.events != 1_000_000 else "")
        + (f" --entities {args.entities}" if args.entities != 10_000 else "")
        + (" --no-feast" if args.no_feast else "")
        + (f" --skew {args.skew:g}" if args.skew != 1.0 else "")
        + (f" --engine {args.engine}" if args.engine != "local" else "")
        + (f" --master {args.master}" if args.engine == "spark" else "")
        + (f" --views {args.views}" if args.views != "windowed,latest" else "")
        + (" --duckdb" if args.duckdb else "")
        + (f" --repeat {args.repeat}" if args.repeat != 3 else "")
    )
    lines = [
        f"## Point-in-time training sets (`benchmarks/pit.py`), {day}",
        "",
        f"Machine: {machine()}.",
        f"Command: `.venv/bin/python benchmarks/pit.py{flags}` ({args.events:,} events, "
        f"{args.entities:,} customers (lognormal weights, sigma {args.skew:g}), {args.days} days, "
        f"entity frame of {args.rows:,} rows; "
        f"ours: best of {args.repeat} fresh processes; memory: the peak of the PSS summed "
        f"over each run's processes, `TreeMemory`).",
        "",
        "| run | features | time | peak RSS (all processes) | largest process | rows returned |",
        "|---|---|---|---|---|---|",
    ]
    labels = {
        "windowed": "feature-service, windowed (count/sum/mean/max/std x 1h/1d/7d/30d)",
        "latest": "feature-service, 10 x `last` (Feast's point-in-time join)",
        "feast": "Feast 0.67 file offline store, 10 plain features, `.to_df()`",
        "duckdb": f"DuckDB, {args.duckdb_threads} threads, the 20 windowed features",
    }
    for name, r in results.items():
        label = labels[name] + (
            f" [{args.engine} engine]" if name in ("windowed", "latest") else ""
        )
        lines.append(
            f"| {label} | {r['features']} | {r['seconds']:.2f} s | "
            f"{r['peak_rss_mb']:.0f} MB | {r.get('largest_process_mb', r['peak_rss_mb']):.0f} MB "
            f"| {r['rows']:,} |"
        )
    if "duckdb" in results and "windowed" in results:
        d, ours = results["duckdb"], results["windowed"]
        lines += [
            "",
            f"Ours / DuckDB on the 20 windowed features: {ours['seconds'] / d['seconds']:.2f}x the "
            f"time, {ours['peak_rss_mb'] / d['peak_rss_mb']:.2f}x the peak memory; values that "
            f"differ: {d.get('values_differ', 'n/a')} of {d.get('values', 'n/a')} "
            f"(not bit-equal: {d.get('values_not_bit_equal', 'n/a')}).",
        ]
    if "feast" in results:
        f, ours = results["feast"], results["latest"]
        lines += [
            "",
            f"Feast / ours on the same 10 plain features: {f['seconds'] / ours['seconds']:.1f}x "
            f"the time, {f['peak_rss_mb'] / ours['peak_rss_mb']:.1f}x the memory. Feast "
            f"returned {f['feast_rows']:,} of {args.rows:,} rows: it dropped {f['dropped']:,} "
            f"({f['dropped_null_in_ours']:,} of them have no event at or before their time; "
            f"ours returns them with nulls). Rows where Feast's values differ from ours: "
            f"{f['rows_differ']:,}.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
