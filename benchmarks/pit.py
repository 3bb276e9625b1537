"""Point-in-time training sets: feature-service against Feast 0.67 on the same data.

    .venv/bin/python benchmarks/pit.py                   # ours and Feast, ~3 minutes
    .venv/bin/python benchmarks/pit.py --no-feast        # ours only
    .venv/bin/python benchmarks/pit.py --record          # also append to RESULTS.md
    .venv/bin/python benchmarks/pit.py --events 10000000 --rows 1000000 --no-feast \
        --views windowed --duckdb --repeat 1             # bucketed engine beside DuckDB
    .venv/bin/python benchmarks/pit.py --events 10000000 --rows 1000000 \
        --entities 100000 --no-feast --views windowed --repeat 1 \
        --engine spark --master local[2] --compare-engine local   # Spark, values vs local
    .venv/bin/python benchmarks/pit.py --events 100000000 --rows 10000000 \
        --entities 1000000 --no-feast --views windowed --repeat 1 \
        --duckdb --duckdb-memory-gib 8 --duckdb-timeout 3600      # 100M, DuckDB beside

What it does:

1. Generates `--events` events (default 1M) of `--entities` customers (10k, weighted
   lognormal(0, `--skew`), default 1; 0 is uniform) over `--days` days (30): an amount,
   a category and ten plain numbers `v0..v9`, and writes them as the worker's offline
   log (3 partitions, offsets, watermarks), plus
   an entity frame of `--rows` (100k) rows at random times (about 1% fall before
   their customer's first event) with a label column. Past 10M events the log is drawn
   and written 10M events at a time (`CHUNK_EVENTS`), so 100M need ~3 GB here.
2. Ours, each in a fresh process (time and peak RSS of that process, imports
   excluded from the time): 20 windowed features (count/sum/mean/max/std over 1h, 1d,
   7d, 30d), and 10 `last` features (the latest `v0..v9` at or before each row: what
   Feast's point-in-time join computes).
   `--engine local` (default) is the bucketed engine (`offline/buckets.py`: the whole
   log in one process up to 2M events, else buckets in one process per core), `whole`
   the evaluator over the whole log in one process, `local-file` the local engine
   writing the training set to a file as the CLI does (a slice of rows at a time,
   `buckets.write_training_set`; the time includes the write), `spark` the Spark engine
   (`--master`, default local[2]); `--buckets B` sets both bucketed engines' B. Peak
   memory is sampled (every 0.1 s) over the process and all its descendants (workers,
   Spark's JVM and Python workers): the peak of their sum, and the peak of the largest
   one (for Spark, also of the driver, the JVM and the Python workers each).
   `--compare-engine E`: engine E runs the same views once more on the same data, and
   the two training sets are compared cell by cell in row order: the values that
   differ beyond the parity tolerance and those that are not bit-equal (with the same
   buckets, `local` and `spark` are bit for bit equal), plus E's time and memory.
   `--duckdb`: DuckDB (`--duckdb-threads`, 2) computes the 20 windowed features over
   the same log files as one range join (`LEFT JOIN` on the key, `ts <= t` and the
   longest window's start; a `FILTER` per feature with the same window start
   `floor(t / hop) * hop - W`), in a fresh process; values compared with ours (counts
   exactly, floats within the parity tolerance, 1e-9 relative). The log has no late
   events, so DuckDB needs no lateness rule. DuckDB runs within `--duckdb-memory-gib`
   (its `memory_limit`, default half the machine's memory; it spills to the work
   folder beyond it) and `--duckdb-timeout` seconds (3600); this process kills it above
   1.5x its memory limit (+ 512 MB for its interpreter). When it runs out of memory, is
   stopped or fails, the report says so, with its time and peak memory until then, and
   the run goes on.
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
import pyarrow as pa
import pyarrow.parquet as pq

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


CHUNK_EVENTS = 10_000_000
"""Events generated at a time: a larger log is written chunk by chunk (each a slice of
the time range), so generating 100M events takes ~3 GB, not the ~20 GB of the whole."""


def generate(
    work: Path,
    events: int,
    entities: int,
    days: int,
    rows: int,
    seed: int,
    skew: float = 1.0,
    feast: bool = True,
) -> None:
    """The offline log, the definitions, the entity frame and (`feast`) Feast's event file.

    Customers are drawn with lognormal(0, `skew`) weights (0: uniform), for events and
    rows alike: busy customers have many events and many training rows. Up to
    `CHUNK_EVENTS` events are drawn at once (the same data for a seed as ever); a larger
    log in chunks of the time range, their sizes multinomial (the same distribution:
    sorted uniform times), each written before the next is drawn."""
    rng = np.random.default_rng(seed)
    (work / "defs.yaml").write_text(DEFINITIONS)
    registry = load_definitions(work / "defs.yaml")
    source = registry.sources["bench"]
    weights = rng.lognormal(0, skew, entities)
    weights /= weights.sum()
    ids = np.array([f"c{i:05d}" for i in range(entities)], dtype=object)
    chunks = max(1, -(-events // CHUNK_EVENTS))
    sizes = [events] if chunks == 1 else rng.multinomial(events, [1 / chunks] * chunks).tolist()
    span = days * 86400 / chunks
    log = EventLog(str(work / "offline"))
    next_offset = [0] * PARTITIONS
    newest = [np.nan] * PARTITIONS  # each partition's newest event time so far
    feast_file = None
    try:
        for k, n in enumerate(sizes):
            ent = rng.choice(entities, n, p=weights)
            ts = np.round(START + k * span + np.sort(rng.uniform(0, span, n)), 3)
            frame: dict[str, Any] = {
                "customer_id": ids[ent],
                "amount": np.round(rng.lognormal(3, 1.2, n), 2),
                "category": np.array(["grocery", "fuel", "travel", "online"], dtype=object)[
                    rng.integers(0, 4, n)
                ],
                "ts": ts,
            }
            for i in range(10):
                frame[f"v{i}"] = np.round(rng.normal(0, 100, n), 4)
            partition = ent % PARTITIONS
            for p in range(PARTITIONS):
                idx = np.flatnonzero(partition == p)
                if idx.size == 0:
                    continue
                part = {key: v[idx] for key, v in frame.items()}
                part_ts = part["ts"]
                part["event_ts"] = part_ts
                part["_partition"] = np.full(idx.size, p, dtype=np.int32)
                part["_offset"] = next_offset[p] + np.arange(idx.size, dtype=np.int64)
                running = np.maximum.accumulate(part_ts)
                if not np.isnan(newest[p]):
                    running = np.maximum(running, newest[p])
                part["_watermark"] = np.concatenate(([newest[p]], running[:-1]))
                df = pd.DataFrame(part)
                for first in range(0, idx.size, 50_000):  # one file per fetched batch (and date)
                    log.write_batch(
                        source, p, next_offset[p] + first, df.iloc[first : first + 50_000]
                    )
                next_offset[p] += idx.size
                newest[p] = float(running[-1])
                del part, df
            if feast:
                table = pa.Table.from_pandas(
                    pd.DataFrame(
                        {
                            "customer_id": frame["customer_id"],
                            "event_timestamp": pd.to_datetime(ts, unit="s", utc=True),
                            **{f"v{i}": frame[f"v{i}"] for i in range(10)},
                        }
                    ),
                    preserve_index=False,
                )
                if feast_file is None:
                    feast_file = pq.ParquetWriter(work / "feast_events.parquet", table.schema)
                feast_file.write_table(table)
            del frame, ent, ts
    finally:
        if feast_file is not None:
            feast_file.close()
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


class TreeMemory:
    """Samples the memory of a process (default this one) and its descendants (every
    0.1 s, from /proc): the peak of their sum and of the largest one, in MB, and the peak
    of each kind's sum (`kinds_mb`: the root process, JVMs, other processes: Spark's
    driver, its JVM and its Python workers). Each process counts its proportional set
    size (PSS: pages shared by forked workers divided among them, so a page is counted
    once; RSS where the kernel gives no PSS)."""

    def __init__(self, root: int | None = None) -> None:
        import threading

        self.root = root or os.getpid()
        self.total_mb = 0.0
        self.largest_mb = 0.0
        self.kinds_mb: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
        me = self.root
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
            kinds: dict[str, float] = {}
            for pid in tree:
                try:
                    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
                    name = Path(f"/proc/{pid}/comm").read_text().strip()
                except OSError:
                    continue
                for line in rollup.splitlines():
                    if line.startswith("Pss:"):
                        rss[pid] = int(line.split()[1]) / 1024
                kind = "root" if pid == me else "jvm" if name == "java" else "others"
                kinds[kind] = kinds.get(kind, 0.0) + rss.get(pid, 0.0)
            sizes = [rss.get(pid, 0.0) for pid in tree]
            self.total_mb = max(self.total_mb, sum(sizes))
            self.largest_mb = max(self.largest_mb, max(sizes))
            for kind, mb in kinds.items():
                self.kinds_mb[kind] = max(self.kinds_mb.get(kind, 0.0), mb)
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_ours(
    work: Path,
    view: str,
    engine: str = "local",
    master: str = "local[2]",
    buckets: int | None = None,
) -> dict[str, Any]:
    """In this (fresh) process: one training set, its time and peak memory (`TreeMemory`:
    this process and its workers); `buckets`: B (default each engine's own choice)."""
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
        out = spark_historical_frame(spark, registry, offline, entity_df, features, buckets=buckets)
    elif engine == "whole":
        started = time.perf_counter()
        out = get_historical_features(registry, offline, entity_df, features)
    elif engine == "local-file":
        from feature_service.offline.buckets import write_training_set

        started = time.perf_counter()
        write_training_set(
            registry, offline, entity_df, ours_path(work, view, engine), features,
            buckets=buckets,
        )  # fmt: skip
        out = entity_df  # its rows are the file's
    else:
        started = time.perf_counter()
        out = bucketed_historical_features(registry, offline, entity_df, features, buckets=buckets)
    seconds = time.perf_counter() - started
    memory.stop()
    if engine != "local-file":
        out.to_parquet(ours_path(work, view, engine), index=False)
    return {
        "seconds": seconds,
        "peak_rss_mb": memory.total_mb,
        "largest_process_mb": memory.largest_mb,
        "kinds_mb": memory.kinds_mb,
        "self_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": len(out),
        "features": len(features),
        "engine": engine,
        **extra,
    }


def ours_path(work: Path, view: str, engine: str) -> Path:
    """Where a run of ours writes its training set."""
    return work / f"ours_{view}_{engine}.parquet"


def compare_engines(work: Path, view: str, engine: str, other: str) -> dict[str, Any]:
    """Values of two engines' training sets that differ, cell by cell in row order (one
    column at a time): beyond the parity tolerance (counts and other exact values
    exactly, floats by 1e-9 relative) and not bit for bit (NaN equal to NaN)."""
    a_path, b_path = ours_path(work, view, engine), ours_path(work, view, other)
    given = set(pq.read_schema(work / "entity_df.parquet").names)
    names = [n for n in pq.read_schema(a_path).names if n not in given]
    if names != [n for n in pq.read_schema(b_path).names if n not in given]:
        raise SystemExit(f"{engine} and {other} gave other feature columns")
    a_ids = pq.read_table(a_path, columns=["row_id"])["row_id"].to_numpy()
    b_ids = pq.read_table(b_path, columns=["row_id"])["row_id"].to_numpy()
    rows_differ = int((a_ids != b_ids).sum())
    differ = not_bit_equal = 0
    for name in names:
        a = pq.read_table(a_path, columns=[name])[name].to_pandas()
        b = pq.read_table(b_path, columns=[name])[name].to_pandas()
        both_null = (a.isna() & b.isna()).to_numpy()
        if a.dtype.kind in "fiu" and b.dtype.kind in "fiu":
            x, y = a.to_numpy(np.float64, na_value=np.nan), b.to_numpy(np.float64, na_value=np.nan)
            bit_equal = (x == y) | both_null
            exact = a.dtype.kind != "f" and b.dtype.kind != "f"
            close = bit_equal if exact else np.isclose(x, y, rtol=1e-9, atol=0) | both_null
        else:
            bit_equal = close = (a == b).to_numpy(dtype=bool) | both_null
        differ += int((~close).sum())
        not_bit_equal += int((~bit_equal).sum())
    return {
        "values": len(a_ids) * len(names),
        "values_differ": differ,
        "values_not_bit_equal": not_bit_equal,
        "rows_out_of_order": rows_differ,
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


def run_duckdb(work: Path, threads: int, memory_gib: float) -> dict[str, Any]:
    """In this (fresh) process: DuckDB's training set, its time and peak memory; within
    `memory_gib` (DuckDB's `memory_limit`, spilling to a folder of `work`), or the time
    and memory at which it ran out."""
    import duckdb

    memory = TreeMemory()
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute(f"SET memory_limit = '{memory_gib:g}GiB'")
    con.execute(f"SET temp_directory = '{work / 'duckdb_spill'}'")
    failed = None
    try:
        con.execute(duckdb_sql(work))
    except duckdb.OutOfMemoryException as exc:
        failed = f"out of memory ({memory_gib:g} GiB limit): {str(exc).splitlines()[0][:200]}"
    seconds = time.perf_counter() - started
    memory.stop()
    result = {
        "seconds": seconds,
        "peak_rss_mb": memory.total_mb,
        "largest_process_mb": memory.largest_mb,
        "self_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "features": 20,
        "duckdb": duckdb.__version__,
        "memory_limit_gib": memory_gib,
    }
    if failed:
        return {**result, "failed": failed, "rows": 0}
    output = work / "duckdb_windowed.parquet"
    return {**result, "rows": pq.ParquetFile(output).metadata.num_rows}


def limited_child(command: list[str], timeout_s: float, kill_mb: float) -> dict[str, Any]:
    """`child`, stopped (killed with its processes) after `timeout_s` seconds or above
    `kill_mb` MB (PSS of its process tree, sampled by this process): the result, or how
    far it got (`failed`, its time, the memory sampled here)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    memory = TreeMemory(process.pid)
    failed = None
    while process.poll() is None:
        elapsed = time.perf_counter() - started
        if elapsed > timeout_s:
            failed = f"stopped at the time limit ({timeout_s:g} s)"
        elif memory.total_mb > kill_mb:
            failed = f"stopped above {kill_mb:.0f} MB"
        if failed:
            process.kill()
            break
        time.sleep(0.2)
    stdout, stderr = process.communicate()
    memory.stop()
    seen = {
        "seconds": time.perf_counter() - started,
        "peak_rss_mb": memory.total_mb,
        "largest_process_mb": memory.largest_mb,
        "rows": 0,
    }
    if failed:
        return {**seen, "failed": failed}
    if process.returncode != 0:
        last = (stderr.strip().splitlines() or [f"exit code {process.returncode}"])[-1]
        return {**seen, "failed": f"exit code {process.returncode}: {last[:300]}"}
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


def compare_with_duckdb(work: Path, engine: str) -> dict[str, Any]:
    """Values of DuckDB and ours that differ: counts exactly, floats by 1e-9 relative.
    Column by column, both put in row_id order once (DuckDB's rows come in any order):
    memory for a few columns, not both tables."""
    ours_file, theirs_file = ours_path(work, "windowed", engine), work / "duckdb_windowed.parquet"
    ours_ids = pq.read_table(ours_file, columns=["row_id"])["row_id"].to_numpy()
    theirs_ids = pq.read_table(theirs_file, columns=["row_id"])["row_id"].to_numpy()
    ours_order, theirs_order = np.argsort(ours_ids), np.argsort(theirs_ids)
    if not np.array_equal(ours_ids[ours_order], theirs_ids[theirs_order]):
        raise SystemExit("DuckDB and ours returned other rows")
    del ours_ids, theirs_ids
    names = [n for n in pq.read_schema(theirs_file).names if n != "row_id"]
    differ = exact = 0
    for name in names:
        a = pq.read_table(ours_file, columns=[name])[name].to_numpy(zero_copy_only=False)
        b = pq.read_table(theirs_file, columns=[name])[name].to_numpy(zero_copy_only=False)
        a = np.asarray(a, dtype=np.float64)[ours_order]
        b = np.asarray(b, dtype=np.float64)[theirs_order]
        both_nan = np.isnan(a) & np.isnan(b)
        close = np.isclose(a, b, rtol=1e-9, atol=0) if not name.startswith("count") else a == b
        differ += int((~(close | both_nan)).sum())
        exact += int(((a == b) | both_nan).sum())
    values = len(ours_order) * len(names)
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


def compare_with_feast(work: Path, engine: str) -> dict[str, Any]:
    ours = pd.read_parquet(ours_path(work, "latest", engine)).set_index("row_id")
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


def memory_gib() -> float:
    """This machine's memory in GiB (MemTotal)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20
    return 8.0


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
    engines = ["local", "local-file", "whole", "spark"]
    parser.add_argument("--engine", choices=engines, default="local")
    parser.add_argument("--master", default="local[2]", help="Spark master (--engine spark)")
    parser.add_argument(
        "--compare-engine",
        choices=engines,
        help="also run this engine (once, same data) and count the values that differ "
        "from --engine's, cell by cell",
    )
    parser.add_argument(
        "--buckets", type=int, help="B for the local and spark engines (default: their own)"
    )
    parser.add_argument("--views", default="windowed,latest", help="which of ours to run")
    parser.add_argument("--duckdb", action="store_true", help="DuckDB beside ours (windowed)")
    parser.add_argument("--duckdb-threads", type=int, default=2)
    parser.add_argument(
        "--duckdb-memory-gib",
        type=float,
        default=round(memory_gib() / 2, 1),
        help="DuckDB's memory_limit (it spills to the work folder beyond it); default half "
        "this machine's memory. Its process is killed above 1.5x this + 512 MB",
    )
    parser.add_argument(
        "--duckdb-timeout", type=float, default=3600, help="seconds before DuckDB is stopped"
    )
    parser.add_argument(
        "--child", choices=["generate", "windowed", "latest", "duckdb"], help=argparse.SUPPRESS
    )
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "generate":
        generate(
            args.work, args.events, args.entities, args.days, args.rows, args.seed, args.skew,
            feast=not args.no_feast,
        )  # fmt: skip
        print(json.dumps({}))
        return
    if args.child == "duckdb":
        print(json.dumps(run_duckdb(args.work, args.duckdb_threads, args.duckdb_memory_gib)))
        return
    if args.child:
        result = run_ours(args.work, args.child, args.engine, args.master, args.buckets)
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="pit-bench-") as tmp:
        work = Path(tmp)
        began = time.perf_counter()
        # in a process of its own, so its memory is given back before ours run
        child([sys.executable, __file__, "--work", str(work), "--child", "generate",
               "--events", str(args.events), "--entities", str(args.entities),
               "--days", str(args.days), "--rows", str(args.rows), "--seed", str(args.seed),
               "--skew", str(args.skew), *(["--no-feast"] if args.no_feast else [])])  # fmt: skip
        print(f"generated {args.events:,} events, {args.rows:,} rows in "
              f"{time.perf_counter() - began:.1f} s", flush=True)  # fmt: skip

        def me(engine: str, what: str) -> list[str]:
            return [sys.executable, __file__, "--work", str(work), "--engine", engine,
                    "--master", args.master, "--duckdb-threads", str(args.duckdb_threads),
                    "--duckdb-memory-gib", str(args.duckdb_memory_gib),
                    *(["--buckets", str(args.buckets)] if args.buckets else []),
                    "--child", what]  # fmt: skip

        results: dict[str, dict[str, Any]] = {}
        for view in args.views.split(","):
            runs = [child(me(args.engine, view)) for _ in range(args.repeat)]
            results[view] = min(runs, key=lambda r: r["seconds"])
            results[view]["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
            print(view, results[view], flush=True)
            if args.compare_engine:
                other = child(me(args.compare_engine, view))
                other.update(compare_engines(work, view, args.engine, args.compare_engine))
                results[f"{view}@{args.compare_engine}"] = other
                print(f"{view} [{args.compare_engine} engine]", other, flush=True)
        if args.duckdb:
            kill_mb = 1.5 * args.duckdb_memory_gib * 1024 + 512  # + the interpreter
            limits = (args.duckdb_timeout, kill_mb)
            results["duckdb"] = limited_child(me(args.engine, "duckdb"), *limits)
            if "windowed" in results and "failed" not in results["duckdb"]:
                results["duckdb"].update(compare_with_duckdb(work, args.engine))
            print("duckdb", results["duckdb"], flush=True)
        if not args.no_feast:
            python = args.feast_python or feast_python(ROOT)
            script = work / "feast_bench.py"
            script.write_text(textwrap.dedent(FEAST_SCRIPT))
            results["feast"] = child([python, str(script), str(work)])
            results["feast"].update(compare_with_feast(work, args.engine))
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
        + (f" --compare-engine {args.compare_engine}" if args.compare_engine else "")
        + (f" --master {args.master}" if "spark" in (args.engine, args.compare_engine) else "")
        + (f" --buckets {args.buckets}" if args.buckets else "")
        + (f" --views {args.views}" if args.views != "windowed,latest" else "")
        + (" --duckdb" if args.duckdb else "")
        + (f" --duckdb-memory-gib {args.duckdb_memory_gib:g}" if args.duckdb else "")
        + (f" --duckdb-timeout {args.duckdb_timeout:g}" if args.duckdb_timeout != 3600 else "")
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
        view, _, engine = name.partition("@")
        if view in ("windowed", "latest"):
            label = f"{labels[view]} [{engine or args.engine} engine]"
        else:
            label = labels[name]
        took = f"{r['seconds']:.2f} s"
        if "failed" in r:
            took = f"did not finish: {r['failed']}, after {r['seconds']:.0f} s"
        lines.append(
            f"| {label} | {r.get('features', 20)} | {took} | "
            f"{r['peak_rss_mb']:.0f} MB | {r.get('largest_process_mb', r['peak_rss_mb']):.0f} MB "
            f"| {r['rows']:,} |"
        )
    for name, r in results.items():
        if "@" not in name:
            continue
        view, _, engine = name.partition("@")
        ours = results[view]
        lines += [
            "",
            f"{args.engine} / {engine} engine on `{view}`: {ours['seconds'] / r['seconds']:.2f}x "
            f"the time, {ours['peak_rss_mb'] / r['peak_rss_mb']:.2f}x the peak memory; values "
            f"that differ, cell by cell: {r['values_differ']:,} of {r['values']:,} (beyond the "
            f"parity tolerance: counts exactly, floats 1e-9 relative), "
            f"{r['values_not_bit_equal']:,} not bit-equal; rows out of order: "
            f"{r['rows_out_of_order']:,}.",
        ]
    for name, r in results.items():
        view, _, engine = name.partition("@")
        if view in ("windowed", "latest") and (engine or args.engine) == "spark":
            kinds = r.get("kinds_mb", {})
            lines += [
                "",
                f"Spark on `{view}`, each kind of process at its own peak: the driver (Python) "
                f"{kinds.get('root', 0):.0f} MB, the JVM {kinds.get('jvm', 0):.0f} MB, Python "
                f"workers {kinds.get('others', 0):.0f} MB; Spark's start "
                f"({r.get('spark_start_seconds', 0):.1f} s) not in the time.",
            ]
    if "duckdb" in results and "windowed" in results:
        d, ours = results["duckdb"], results["windowed"]
        if "failed" in d:
            lines += [
                "",
                f"DuckDB did not finish ({d['failed']}) after {d['seconds']:.0f} s, at a peak of "
                f"{d['peak_rss_mb']:.0f} MB (memory_limit {args.duckdb_memory_gib:g} GiB, "
                f"time limit {args.duckdb_timeout:g} s); ours took {ours['seconds']:.1f} s and "
                f"{ours['peak_rss_mb']:.0f} MB.",
            ]
        else:
            lines += [
                "",
                f"Ours / DuckDB on the 20 windowed features: {ours['seconds'] / d['seconds']:.2f}x "
                f"the time, {ours['peak_rss_mb'] / d['peak_rss_mb']:.2f}x the peak memory; values "
                f"that differ: {d.get('values_differ', 'n/a')} of {d.get('values', 'n/a')} "
                f"(not bit-equal: {d.get('values_not_bit_equal', 'n/a')}); DuckDB's "
                f"memory_limit {args.duckdb_memory_gib:g} GiB.",
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
