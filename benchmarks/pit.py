"""Point-in-time training sets: feature-service against Feast 0.67 on the same data.

    .venv/bin/python benchmarks/pit.py                   # ours and Feast, ~3 minutes
    .venv/bin/python benchmarks/pit.py --no-feast        # ours only
    .venv/bin/python benchmarks/pit.py --record          # also append to RESULTS.md

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


def run_ours(work: Path, view: str) -> dict[str, Any]:
    """In this (fresh) process: one training set, its time and this process's peak RSS."""
    from feature_service.offline.historical import get_historical_features

    registry = load_definitions(work / "defs.yaml")
    entity_df = pd.read_parquet(work / "entity_df.parquet")
    features = [f"{view}:{f.name}" for f in registry.feature_views[view].features]
    started = time.perf_counter()
    out = get_historical_features(registry, str(work / "offline"), entity_df, features)
    seconds = time.perf_counter() - started
    out.to_parquet(work / f"ours_{view}.parquet", index=False)
    return {
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": len(out),
        "features": len(features),
    }


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
    parser.add_argument("--child", choices=["windowed", "latest"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_ours(args.work, args.child)))
        return

    with tempfile.TemporaryDirectory(prefix="pit-bench-") as tmp:
        work = Path(tmp)
        began = time.perf_counter()
        generate(work, args.events, args.entities, args.days, args.rows, args.seed, args.skew)
        print(f"generated {args.events:,} events, {args.rows:,} rows in "
              f"{time.perf_counter() - began:.1f} s", flush=True)  # fmt: skip
        me = [sys.executable, __file__, "--work", str(work), "--child"]
        results: dict[str, dict[str, Any]] = {}
        for view in ("windowed", "latest"):
            runs = [child([*me, view]) for _ in range(args.repeat)]
            results[view] = min(runs, key=lambda r: r["seconds"])
            results[view]["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
            print(view, results[view], flush=True)
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
    flags = (" --no-feast" if args.no_feast else "") + (
        f" --skew {args.skew:g}" if args.skew != 1.0 else ""
    )
    lines = [
        f"## Point-in-time training sets (`benchmarks/pit.py`), {day}",
        "",
        f"Machine: {machine()}.",
        f"Command: `.venv/bin/python benchmarks/pit.py{flags}` ({args.events:,} events, "
        f"{args.entities:,} customers (lognormal weights, sigma {args.skew:g}), {args.days} days, "
        f"entity frame of {args.rows:,} rows; "
        f"ours: best of {args.repeat} fresh processes, peak RSS of the process).",
        "",
        "| run | features | time | peak RSS | rows returned |",
        "|---|---|---|---|---|",
    ]
    labels = {
        "windowed": "feature-service, windowed (count/sum/mean/max/std x 1h/1d/7d/30d)",
        "latest": "feature-service, 10 x `last` (Feast's point-in-time join)",
        "feast": "Feast 0.67 file offline store, 10 plain features, `.to_df()`",
    }
    for name, r in results.items():
        lines.append(
            f"| {labels[name]} | {r['features']} | {r['seconds']:.2f} s | "
            f"{r['peak_rss_mb']:.0f} MB | {r['rows']:,} |"
        )
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
