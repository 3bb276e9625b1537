"""Online lookups, feature-service against Feast: same Redis, same data, same requests.

    .venv/bin/python benchmarks/online.py                 # both, ~7 minutes
    .venv/bin/python benchmarks/online.py --no-feast      # ours only
    .venv/bin/python benchmarks/online.py --record        # also append to RESULTS.md
    .venv/bin/python benchmarks/online.py --processes 1   # without the 2-process cases

What it does:

1. Generates `--events` card transactions over the last 7 days for `--customers`
   customers (definitions/generate_sample.py), and a benchmark view `cust50` of 50
   windowed features (counts, sums, means, min/max, std/var over 1h/1d/7d, distinct
   counts, `where` filters, first/last/recency) beside the example definitions.
2. Starts the embedded stack (broker, Redis, one worker, one uvicorn API process) and
   ingests the events through the worker, then stops the worker (so that only lookups
   talk to Redis while they are timed).
3. Times `POST /get-online-features` for 1 x 5, 1 x 50 and 100 x 50 (entities x
   features), with one sequential client (http.client, keep-alive: p50/p90/p99 and
   req/s) and with 16 concurrent connections (`wrk -t1 -c16`, if installed: `apt-get
   install wrk`): cases `1 x 5, 1 client`, `1 x 5, 16 clients`, ... Every request
   evaluates each window at request time (t = now) from the state in Redis.
4. With `--processes N` (default 2) and wrk: the same three requests at 16 connections
   against `feature-service serve --workers N` on the same Redis and definitions, cases
   `1 x 5, 16 clients, 2 processes`, ... (the cases above run against ONE process).
5. Feast 0.67 (in its own venv, benchmarks/feast_env.py, created on first use): the same
   50 values per customer, read back from our API at the same moment, written to
   Parquet, `feast apply` + `feast materialize` into the same Redis server (db 1), `feast
   serve --workers 1`; then the same requests (Feast stores values, it does not evaluate
   windows), and the 16-connection ones against `feast serve --workers N` (same names).

Output: JSON `{"feature-service": {case: stats}, "feast": {case: stats}}`, stats
`p50_ms`, `p90_ms`, `p99_ms`, `req_per_s`, `entity_rows_per_s`; ours also

- `redis_commands_per_request`: the Redis server's `INFO commandstats` (the sum of
  `calls` over all commands) before and after the timed run, the difference divided by
  the requests sent. Commands a Lua script runs (`redis.call`) count as commands beside
  the EVALSHA that runs them. A connection the server's pool opens during the run adds
  its set-up (3 commands: HELLO, CLIENT SETINFO x2; 4 reads): each wrk run follows a
  1 s warm-up at the same load, so the pools are already that large.
- `redis_round_trips_per_request`: `total_reads_processed` of `INFO stats` (the read
  events of the server) over the same run, divided the same way. A client that waits for
  each answer before it sends again (redis-py) causes one read per round trip, a
  pipeline of commands one in all; a request that arrived in several pieces would count
  more than once, so this is an upper bound, equal to the round trips for requests as
  small as these (a few KB): a redis-py pipeline of 100 GETs measures 1.0, 100 commands.

Both are exact for the sequential client (every request finished before the second
INFO). For wrk the divisor is the requests wrk wrote (its Lua `request()` calls, not the
"N requests in" it completed: up to 16 more were in flight at the end), and the second
INFO waits a second for those to finish. With several processes, one that gets more of
wrk's 16 connections than in the warm-up may still open a few Redis connections. Nothing
else talks to this Redis meanwhile (the worker is stopped, Feast runs later): the idle
rate printed before the runs is what the API sends with no request (0 here).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "definitions"))

from generate_sample import generate_events, write_events  # noqa: E402

from feature_service.definitions import load_definitions  # noqa: E402
from feature_service.embedded import EmbeddedStack, ManagedProcess  # noqa: E402
from feature_service.embedded.processes import free_port, port_open  # noqa: E402
from feature_service.online.redis_layout import stats_key  # noqa: E402
from feature_service.stream.event_files import read_event_messages  # noqa: E402
from feature_service.stream.producer import produce_messages  # noqa: E402
from feature_service.stream.topics import ensure_topics  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from feast_env import feast_python  # noqa: E402

VIEW = "cust50"
BENCH_VIEW = f"""
feature_views:
  - name: {VIEW}
    source: transactions
    entity: customer
    ttl: 30d
    description: 50 features for the online benchmark.
    features:
      - {{column: amount, aggregations: [sum, mean, min, max, std], windows: [1h, 1d, 7d]}}
      - {{column: amount, aggregation: var, windows: [1d, 7d]}}
      - {{name: n_1h, aggregation: count, window: 1h}}
      - {{name: n_1d, aggregation: count, window: 1d}}
      - {{name: n_7d, aggregation: count, window: 7d}}
      - {{column: category, aggregation: count_distinct, windows: [1d, 7d]}}
      - {{column: merchant_id, aggregation: count_distinct, windows: [1h, 1d, 7d]}}
      - {{name: first_amount, column: amount, aggregation: first}}
      - {{name: last_amount, column: amount, aggregation: last}}
      - {{name: secs_since_last, aggregation: time_since_last}}
      - {{name: online_n_1d, aggregation: count, window: 1d, where: "channel == 'online'"}}
      - {{name: online_n_7d, aggregation: count, window: 7d, where: "channel == 'online'"}}
      - {{name: online_sum_1d, column: amount, aggregation: sum, window: 1d,
          where: "channel == 'online'"}}
      - {{name: online_sum_7d, column: amount, aggregation: sum, window: 7d,
          where: "channel == 'online'"}}
      - {{name: intl_n_1d, aggregation: count, window: 1d, where: "is_international"}}
      - {{name: intl_n_7d, aggregation: count, window: 7d, where: "is_international"}}
      - {{name: intl_sum_7d, column: amount, aggregation: sum, window: 7d,
          where: "is_international"}}
      - {{name: big_n_1d, aggregation: count, window: 1d, where: "amount > 500"}}
      - {{name: big_n_7d, aggregation: count, window: 7d, where: "amount > 500"}}
      - {{name: grocery_n_7d, aggregation: count, window: 7d, where: "category == 'grocery'"}}
      - {{name: travel_n_7d, aggregation: count, window: 7d, where: "category == 'travel'"}}
      - {{name: cash_sum_7d, column: amount, aggregation: sum, window: 7d,
          where: "channel == 'atm'"}}
      - {{name: atm_n_1d, aggregation: count, window: 1d, where: "channel == 'atm'"}}
      - {{name: night_max_1d, column: amount, aggregation: max, window: 1d,
          where: "category in ('online', 'travel')"}}
      - {{name: first_amount_7d, column: amount, aggregation: first, window: 7d}}
      - {{name: last_amount_1d, column: amount, aggregation: last, window: 1d}}
      - {{name: min_amount_all, column: amount, aggregation: min}}
      - {{name: amount_var_1h, column: amount, aggregation: var, window: 1h}}
      - {{name: first_amount_1d, column: amount, aggregation: first, window: 1d}}
      - {{name: restaurant_n_7d, aggregation: count, window: 7d,
          where: "category == 'restaurant'"}}
      - {{name: fuel_n_7d, aggregation: count, window: 7d, where: "category == 'fuel'"}}
      - {{name: online_mean_7d, column: amount, aggregation: mean, window: 7d,
          where: "channel == 'online'"}}
"""
SCENARIOS = (("1 x 5", 1, 5), ("1 x 50", 1, 50), ("100 x 50", 100, 50))

# `--variant new-kinds`: the view's last 10 features become 10 of the aggregations added
# by issue 24 (same column reads, so the same state); `--variant added-new-kinds`: the 10
# added to the view's 50 (its state carries them), the requests the 50 as in `plain`;
# `--variant derived`: 5 derived
# features on the view, added to the 1 x 50 and 100 x 50 requests (55 names).
NEW_KINDS = """\
      - {name: last_5_amounts, column: amount, aggregation: last_k, k: 5}
      - {name: top_categories_7d, column: category, aggregation: frequent_k, k: 3, window: 7d}
      - {name: amount_p90_7d, column: amount, aggregation: approx_percentile,
          percentile: 0.9, window: 7d}
      - {name: mean_gap_7d, aggregation: mean_gap, window: 7d}
      - {name: top_amounts_7d, column: amount, aggregation: top_k, k: 3, window: 7d}
      - {name: merchants_approx_7d, column: merchant_id, aggregation: approx_count_distinct,
          window: 7d}
      - {name: amount_decayed_7d, column: amount, aggregation: decayed_sum, half_life: 1d,
          window: 7d}
      - {name: amount_kurtosis_7d, column: amount, aggregation: kurtosis, window: 7d}
      - {name: last_merchants, column: merchant_id, aggregation: last_distinct_k, k: 3}
      - {name: category_histogram_1d, column: category, aggregation: histogram, k: 5,
          window: 1d}
"""
DERIVED = """\
      - {name: ratio_1d_7d, expression: "amount_sum_1d / amount_sum_7d"}
      - {name: z_last, expression: "(last_amount - amount_mean_7d) / amount_std_7d"}
      - {name: online_share_7d, expression: "online_n_7d / n_7d"}
      - {name: big_share_7d, expression: "coalesce(big_n_7d / n_7d, 0)"}
      - {name: log_sum_7d, expression: "log(amount_sum_7d + 1)"}
"""
DERIVED_NAMES = ("ratio_1d_7d", "z_last", "online_share_7d", "big_share_7d", "log_sum_7d")


def bench_view(variant: str) -> str:
    """The benchmark view's YAML for `variant` (plain, new-kinds, added-new-kinds, derived)."""
    if variant == "added-new-kinds":
        return BENCH_VIEW + NEW_KINDS
    if variant == "new-kinds":
        lines = BENCH_VIEW.rstrip("\n").split("\n")
        starts = [i for i, line in enumerate(lines) if line.startswith("      - {")]
        return "\n".join(lines[: starts[-10]]) + "\n" + NEW_KINDS
    if variant == "derived":
        return BENCH_VIEW + DERIVED
    return BENCH_VIEW


def percentiles(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=100)
    return {"p50_ms": q[49] * 1000, "p90_ms": q[89] * 1000, "p99_ms": q[98] * 1000}


def bodies(features: list[str], entities: list[str], n: int, count: int) -> list[dict]:
    return [
        {
            "features": features,
            "entities": {"customer_id": [entities[(i * n + k) % len(entities)] for k in range(n)]},
        }
        for i in range(count)
    ]


class RedisCounter:
    """Commands and read events of the Redis server around a timed run (see the module
    docstring): `measure(run)` returns the run's stats with the two per-request keys."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)

    def snapshot(self) -> tuple[int, int]:
        info = self.client.info("stats", "commandstats")
        calls = sum(v["calls"] for k, v in info.items() if k.startswith("cmdstat_"))
        return calls, int(info["total_reads_processed"])

    def measure(
        self, run: Callable[[], tuple[dict[str, float], int]], settle_s: float = 0.0
    ) -> dict[str, float]:
        time.sleep(settle_s)  # requests of an earlier run still in flight when it stopped
        before = self.snapshot()
        stats, requests = run()
        time.sleep(settle_s)  # and of this one
        after = self.snapshot()
        # the first INFO counts among the commands after it, the second's read before it
        commands, reads = after[0] - before[0] - 1, after[1] - before[1] - 1
        stats["redis_commands_per_request"] = commands / requests
        stats["redis_round_trips_per_request"] = reads / requests
        return stats

    def idle_rates(self, seconds: float = 2.0) -> tuple[float, float]:
        """Commands and reads per second while no client sends anything."""
        before = self.snapshot()
        time.sleep(seconds)
        after = self.snapshot()
        return (after[0] - before[0] - 1) / seconds, (after[1] - before[1] - 1) / seconds


def sequential(url: str, requests: list[dict]) -> tuple[dict[str, float], int]:
    """One client, one request at a time over one keep-alive connection; the first 10%
    are warm-up. `http.client` keeps the client's own cost (~0.1 ms) out of the way.
    Returns the stats and the number of requests sent (warm-up included)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Content-Type": "application/json"}
    payloads = [json.dumps(body).encode() for body in requests]
    timings = []
    for payload in payloads:
        start = time.perf_counter()
        connection.request("POST", "/get-online-features", payload, headers)
        response = connection.getresponse()
        data = response.read()
        timings.append(time.perf_counter() - start)
        assert response.status == 200, data[:300]
    connection.close()
    kept = timings[len(timings) // 10 :]
    stats = percentiles(kept)
    stats["req_per_s"] = len(kept) / sum(kept)
    return stats, len(payloads)


WRK_SCRIPT = """
local bodies = {}
local i = 0
sent = 0
for line in io.lines("%s") do bodies[#bodies + 1] = line end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% #bodies + 1
  sent = sent + 1
  return wrk.format(nil, "/get-online-features", nil, bodies[i])
end
local threads = {}
setup = function(thread) threads[#threads + 1] = thread end
done = function(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("sent") end
  io.write(string.format("requests sent: %%d\\n", total))
end
"""


def concurrent(
    url: str, requests: list[dict], tmp: Path, seconds: int
) -> tuple[dict[str, float], int]:
    """16 connections from `wrk` (one thread), latency percentiles and req/s; and the
    requests wrk wrote (the completed ones, "N requests in", plus those in flight)."""
    lines = tmp / "bodies.jsonl"
    lines.write_text("\n".join(json.dumps(b) for b in requests) + "\n")
    script = tmp / "post.lua"
    script.write_text(WRK_SCRIPT % lines)
    # wrk leaves answers slower than --timeout (default 2 s) out of its percentiles
    command = ["wrk", "-t1", "-c16", f"-d{seconds}s", "--timeout", "30s", "--latency"]
    out = subprocess.run(
        [*command, "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    stats: dict[str, float] = {}
    for label, key in (("50%", "p50_ms"), ("90%", "p90_ms"), ("99%", "p99_ms")):
        match = re.search(rf"{re.escape(label)}\s+([\d.]+)(us|ms|s)\b", out)
        if match:
            value, unit = float(match.group(1)), match.group(2)
            stats[key] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    stats["req_per_s"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert errors is None, f"wrk saw errors: {errors.group(0)}"
    sockets = re.search(r"Socket errors: .*", out)
    assert sockets is None, f"wrk saw errors: {sockets.group(0)}"
    completed = int(re.search(r"(\d+) requests in ", out).group(1))  # type: ignore[union-attr]
    sent = re.search(r"requests sent: (\d+)", out)
    # wrk calls request() once more than it sends, to check the request (wrk.c,
    # script_verify_request, on the first thread)
    return stats, max(int(sent.group(1)) - 1 if sent else completed, completed, 1)


def run_all(
    url: str,
    features: list[str],
    entities: list[str],
    args: Any,
    tmp: Path,
    counter: RedisCounter | None = None,
    processes: int = 1,
    derived: bool = False,
) -> dict:
    """The cases against one server. One process: 1 client and 16 clients per request
    (`1 x 5, 1 client`, `1 x 5, 16 clients`, ...); several (`processes`): 16 clients only,
    `1 x 5, 16 clients, 2 processes`, ... With `counter`, Redis commands and round trips
    per request too."""

    def measured(run: Callable[[], tuple[dict[str, float], int]], settle_s: float) -> dict:
        return counter.measure(run, settle_s) if counter else run()[0]

    def asked(f: int) -> list[str]:  # the first f features, and the derived ones with 50
        extra = [f"{VIEW}:{name}" for name in DERIVED_NAMES] if f == 50 and derived else []
        return features[:f] + extra

    suffix = f", {processes} processes" if processes > 1 else ""
    results: dict[str, dict[str, float]] = {}
    for label, n, f in SCENARIOS:
        if processes == 1:
            count = args.requests if n == 1 else max(args.requests // 10, 50)
            sequence = bodies(asked(f), entities, n, count)
            seq = measured(lambda: sequential(url, sequence), 0.0)  # noqa: B023 - called now
            seq["entity_rows_per_s"] = seq["req_per_s"] * n
            results[f"{label}, 1 client"] = seq
        if shutil.which("wrk"):
            mix = bodies(asked(f), entities, n, 500)
            concurrent(url, mix, tmp, 1)  # warm-up: the server's Redis pools grow to this load
            con = measured(lambda: concurrent(url, mix, tmp, args.seconds), 1.0)  # noqa: B023
            con["entity_rows_per_s"] = con["req_per_s"] * n
            results[f"{label}, 16 clients{suffix}"] = con
    return results


def ingest(stack: EmbeddedStack, defs: Path, events_file: Path, n_lines: int) -> None:
    registry = load_definitions(defs)
    source = registry.sources["transactions"]
    asyncio.run(ensure_topics(stack.broker.bootstrap, registry))
    stack.worker = stack.worker_process(defs).start()
    start = time.monotonic()
    asyncio.run(
        produce_messages(
            stack.broker.bootstrap, source, read_event_messages(events_file, source.key)
        )
    )
    client = redis.Redis.from_url(stack.redis.url)
    while True:
        raw = client.hgetall(stats_key("transactions"))
        if int(raw.get(b"events", 0)) + int(raw.get(b"dlq", 0)) >= n_lines:
            break
        if time.monotonic() - start > 1800:
            raise SystemExit("ingest did not finish in 30 minutes")
        time.sleep(0.5)
    print(f"ingested {n_lines} events in {time.monotonic() - start:.0f} s", flush=True)


def snapshot(url: str, features: list[str], entities: list[str]) -> pd.DataFrame:
    """Our values now, to give Feast the same data."""
    frames = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for i in range(0, len(entities), 500):
            chunk = entities[i : i + 500]
            body = {"features": features, "entities": {"customer_id": chunk}}
            data = http.post("/get-online-features", json=body).json()
            names = data["metadata"]["feature_names"]
            frames.append(
                pd.DataFrame({n: r["values"] for n, r in zip(names, data["results"], strict=True)})
            )
    frame = pd.concat(frames, ignore_index=True)
    for column in frame.columns[1:]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame


FEAST_REPO = """
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource
from feast.types import Float64
from feast.value_type import ValueType

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
source = FileSource(path="{path}", timestamp_field="event_timestamp")
{view} = FeatureView(
    name="{view}", entities=[customer], ttl=timedelta(days=30), online=True, source=source,
    schema=[{fields}],
)
"""


def prepare_feast(
    tmp: Path, values: pd.DataFrame, redis_port: int
) -> tuple[list[str], dict[str, str]]:
    """A Feast repository with `values`, applied and materialized into the same Redis
    server (db 1); the `feast` command line for it and its environment."""
    python = feast_python(ROOT)
    repo = tmp / "feast_repo"
    repo.mkdir()
    data = values.copy()
    data["event_timestamp"] = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=5)
    data.to_parquet(repo / "values.parquet", index=False)
    (repo / "feature_store.yaml").write_text(
        textwrap.dedent(
            f"""\
            project: bench
            registry: {repo / "registry.db"}
            provider: local
            online_store:
              type: redis
              connection_string: "127.0.0.1:{redis_port},db=1"
            offline_store:
              type: file
            entity_key_serialization_version: 3
            """
        )
    )
    fields = ", ".join(f'Field(name="{c}", dtype=Float64)' for c in values.columns[1:])
    (repo / "repo.py").write_text(
        FEAST_REPO.format(path=repo / "values.parquet", view=VIEW, fields=fields)
    )
    feast = [str(Path(python).parent / "feast"), "--chdir", str(repo)]
    env = {**os.environ, "FEAST_USAGE": "False", "PYTHONWARNINGS": "ignore"}
    subprocess.run([*feast, "apply"], check=True, env=env, capture_output=True)
    end = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    begin = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    started = time.monotonic()
    subprocess.run([*feast, "materialize", begin, end], check=True, env=env, capture_output=True)
    print(f"feast materialize: {time.monotonic() - started:.0f} s", flush=True)
    return feast, env


def serve_feast(
    feast: list[str], env: dict[str, str], tmp: Path, workers: int = 1
) -> tuple[ManagedProcess, str]:
    """`feast serve --workers N` on a free port, once its port is open."""
    port = free_port()
    serve = ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    server = ManagedProcess(
        "feast",
        # Feast's default --max-requests (1000) recycles its worker mid-run
        [*feast, *serve, "--no-access-log", "--max-requests", "100000000"],
        log_path=tmp / f"feast-{workers}.log",
        env=env,
    ).start()
    server.wait_until(lambda: port_open("127.0.0.1", port), 120, "feast serving")
    return server, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=10, help="per wrk run")
    parser.add_argument("--no-feast", action="store_true")
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="server processes of the extra 16-client cases (ours and Feast's; 1: none)",
    )
    parser.add_argument(
        "--variant",
        choices=("plain", "new-kinds", "added-new-kinds", "derived"),
        default="plain",
        help="new-kinds: 10 of the 50 features are issue 24's aggregations; added-new-kinds: "
        "the 10 added to the view, the 50 requested as in plain; derived: 5 derived "
        "features added to the 50-feature requests",
    )
    parser.add_argument("--record", action="store_true", help="append to RESULTS.md")
    args = parser.parse_args()
    several = args.processes > 1 and shutil.which("wrk") is not None
    if args.processes > 1 and not several:
        print(f"no wrk: no {args.processes}-process cases (they are 16-client)", flush=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        defs = tmp / "defs"
        defs.mkdir()
        shutil.copy(ROOT / "definitions" / "transactions.yaml", defs)
        (defs / "bench.yaml").write_text(bench_view(args.variant))
        registry = load_definitions(defs)
        features = [f"{VIEW}:{f.name}" for f in registry.feature_views[VIEW].features][:50]
        start = datetime.now(UTC) - timedelta(days=7)
        events = generate_events(
            args.events, seed=11, start=start, days=7, customers=args.customers
        )
        events_file = tmp / "events.jsonl"
        write_events(events, events_file)
        entities = sorted(
            {e["customer_id"] for e in events if isinstance(e, dict) and "customer_id" in e}
        )
        print(f"{len(events)} events, {len(entities)} customers", flush=True)
        with EmbeddedStack(tmp / "stores") as stack:
            ingest(stack, defs, events_file, len(events))
            assert stack.worker is not None
            stack.worker.stop()  # only the lookups talk to Redis from here on
            counter = RedisCounter(stack.redis.url)
            started = time.monotonic()
            stack.start_api(None, defs)
            startup_s = time.monotonic() - started
            assert stack.api is not None and stack.api_url is not None
            commands, reads = counter.idle_rates()
            print(f"idle API: {commands:.1f} Redis commands/s, {reads:.1f} reads/s", flush=True)
            derived = args.variant == "derived"
            ours = run_all(stack.api_url, features, entities, args, tmp, counter, 1, derived)
            results = {"feature-service": ours}
            print(json.dumps(results, indent=2), flush=True)
            if several:
                stack.api.stop()
                stack.start_api(None, defs, workers=args.processes)
                time.sleep(startup_s)  # the port is open: its processes import the app
                ours.update(
                    run_all(
                        stack.api_url,
                        features,
                        entities,
                        args,
                        tmp,
                        counter,
                        args.processes,
                        derived,
                    )
                )
            if not args.no_feast:
                values = snapshot(stack.api_url, features, entities)
                command, env = prepare_feast(tmp, values, stack.redis.port)
                feast_features = [f"{VIEW}:{c}" for c in values.columns[1:]]
                started = time.monotonic()
                feast, feast_url = serve_feast(command, env, tmp)
                feast_startup_s = time.monotonic() - started
                try:
                    results["feast"] = run_all(feast_url, feast_features, entities, args, tmp)
                finally:
                    feast.stop()
                if several:
                    feast, feast_url = serve_feast(command, env, tmp, args.processes)
                    try:
                        time.sleep(feast_startup_s)  # as above
                        results["feast"].update(
                            run_all(
                                feast_url, feast_features, entities, args, tmp,
                                processes=args.processes,
                            )
                        )  # fmt: skip
                    finally:
                        feast.stop()
    print(json.dumps(results, indent=2))
    if args.record:
        record(results, args)


def record(results: dict[str, dict[str, dict[str, float]]], args: Any) -> None:
    """Append a table to RESULTS.md: one row per case of ours, beside Feast's case of the
    same name, and (16 clients, one process of ours) against Feast with N workers."""
    ours, feast = results["feature-service"], results.get("feast", {})
    load = os.getloadavg()
    several = f", 16 clients, {args.processes} processes"
    lines = [
        "",
        f"## Online lookups vs Feast (`benchmarks/online.py`), {datetime.now(UTC):%Y-%m-%d}",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average before the run {load[0]:.1f}. Command: "
        f"`.venv/bin/python benchmarks/online.py --events {args.events} "
        f"--customers {args.customers} --processes {args.processes} --record`. "
        f"Processes: `feature-service serve --workers N` and `feast serve --workers N`; "
        f"Redis per request: commands / round trips (read events) of the server.",
        "",
        "| request | clients | processes | ours p50 / p99 | ours req/s | ours rows/s "
        "| Redis per request | Feast p50 / p99 | Feast req/s | ratio (req/s) "
        f"| ratio vs Feast {args.processes} workers |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, ours_row in ours.items():
        label, clients, *rest = key.split(", ")
        processes = rest[0].split()[0] if rest else "1"
        theirs = feast.get(key)
        their_cells = (
            f"{theirs['p50_ms']:.2f} / {theirs['p99_ms']:.2f} ms | {theirs['req_per_s']:,.0f} | "
            f"{ours_row['req_per_s'] / theirs['req_per_s']:.1f}x"
            if theirs
            else "- | - | -"
        )
        # one process of ours against Feast's N, where Feast ran this request with N
        their_several = feast.get(f"{label}{several}") if not rest and "16" in clients else None
        several_cell = (
            f"{ours_row['req_per_s'] / their_several['req_per_s']:.1f}x" if their_several else "-"
        )
        redis_cell = (
            f"{ours_row['redis_commands_per_request']:.2f} / "
            f"{ours_row['redis_round_trips_per_request']:.2f}"
            if "redis_commands_per_request" in ours_row
            else "-"
        )
        lines.append(
            f"| {label} | {clients.split()[0]} | {processes} | {ours_row['p50_ms']:.2f} / "
            f"{ours_row['p99_ms']:.2f} ms | {ours_row['req_per_s']:,.0f} | "
            f"{ours_row['entity_rows_per_s']:,.0f} | {redis_cell} | {their_cells} "
            f"| {several_cell} |"
        )
    with (ROOT / "benchmarks" / "RESULTS.md").open("a") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
