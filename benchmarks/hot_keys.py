"""Hot keys benchmark: what one very busy entity costs in Redis, at lookup and at ingest.

    .venv/bin/python benchmarks/hot_keys.py                       # 400k events, 300k hot
    .venv/bin/python benchmarks/hot_keys.py --events 4000000 --hot-share 0.75

Events come from definitions/generate_sample.py (7 days, 10k customers, 2k merchants),
well-formed rows only, in time order (so none is late). The skewed stream then gives
`--hot-share` of them (chosen at random) to one merchant, `m_hot`; the uniform stream is
the same events untouched. Each stream runs through a fresh embedded stack (Tansu,
Redis) and one worker process with the shipped definitions (benchmarks/ingest.py's
`run_worker`: steady events/s from the first committed batch to the last).

After the skewed run, with the worker stopped:
- Redis bytes (`MEMORY USAGE key SAMPLES 0`) of the hot merchant's `merchant_txn` key
  against the median over normal merchants;
- lookups of every `merchant_txn` feature for one entity at a time, `--lookups` each, at
  `t` = one second after the newest event, through `online.service.online_features` in
  this process (the lookup's server side: Redis read, decode, windows; no HTTP): p50 and
  p99 for the hot merchant and for normal merchants (a random one per lookup);
- the hot merchant's values against the brute force (`aggregation.reference`, the window
  contract evaluated straight from the events), feature by feature;
- its compaction horizon and raw events kept, and the refusal an `as_of` a minute before
  the horizon gets (DESIGN.md "Bounded state").

The result is printed as JSON (`--json PATH` writes it too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import run_worker  # noqa: E402
from definitions.generate_sample import generate_events, is_well_formed, write_events  # noqa: E402
from feature_service.aggregation.reference import Event, brute_force, matches  # noqa: E402
from feature_service.aggregation.state import decode  # noqa: E402
from feature_service.definitions import load_definitions  # noqa: E402
from feature_service.embedded import EmbeddedStack  # noqa: E402
from feature_service.online.redis_client import connect  # noqa: E402
from feature_service.online.redis_layout import (  # noqa: E402
    entity_key,
    entity_keys_pattern,
    view_layout,
)
from feature_service.online.service import online_features  # noqa: E402
from feature_service.requests import RequestError, resolve_features  # noqa: E402
from feature_service.stream.event_files import read_event_messages  # noqa: E402
from feature_service.stream.producer import produce_messages  # noqa: E402
from feature_service.stream.topics import ensure_topics  # noqa: E402

DEFINITIONS = ROOT / "definitions"
VIEW = "merchant_txn"
HOT = "m_hot"


def streams(n: int, hot_share: float, seed: int) -> tuple[list[dict], list[dict]]:
    """The uniform and the skewed events (well-formed, in time order)."""
    rows = [r for r in generate_events(n, seed=seed, days=7, customers=10_000, merchants=2_000)]
    uniform = sorted((r for r in rows if isinstance(r, dict) and is_well_formed(r)), key=_ts)
    rng = np.random.default_rng(seed)
    hot = set(rng.choice(len(uniform), size=int(hot_share * len(uniform)), replace=False))
    skewed = [{**r, "merchant_id": HOT} if i in hot else r for i, r in enumerate(uniform)]
    return uniform, skewed


def _ts(row: dict) -> float:
    return float(row["ts"])


def ingest(events: list[dict], work: Path, name: str) -> tuple[dict, EmbeddedStack]:
    """Produce `events`, run one worker over them; the stack is left running."""
    path = work / f"{name}.jsonl"
    write_events(events, path)
    registry = load_definitions(DEFINITIONS)
    source = registry.sources["transactions"]
    stack = EmbeddedStack(work / f"{name}-stores").__enter__()
    asyncio.run(ensure_topics(stack.broker.bootstrap, registry))
    messages = list(read_event_messages(path, source.key))
    asyncio.run(produce_messages(stack.broker.bootstrap, source, messages))
    offline = work / f"{name}-offline" / "log"
    offline.parent.mkdir(parents=True, exist_ok=True)
    return run_worker(stack, len(messages), offline, None), stack


def redis_bytes(url: str, normal: list[str]) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    hot = client.memory_usage(entity_key(VIEW, HOT), samples=0)
    view = load_definitions(DEFINITIONS).feature_views[VIEW]
    states = decode(view_layout(view), [client.get(entity_key(VIEW, HOT))])
    meta = states.metas[0]
    sizes = []
    for merchant in normal:
        size = client.memory_usage(entity_key(VIEW, merchant), samples=0)
        if size is not None:
            sizes.append(int(size))
    keys = sum(1 for _ in client.scan_iter(match=entity_keys_pattern(VIEW), count=1000))
    return {
        "hot_bytes": int(hot) if hot is not None else None,
        "normal_median_bytes": statistics.median(sizes),
        "normal_max_bytes": max(sizes),
        "keys": keys,
        "hot_horizon": None if meta is None else meta.horizon,
        "hot_raw_events": len(states.events),
    }


async def lookups(
    url: str, t: float, normal: list[str], n: int, horizon: float | None
) -> tuple[dict, dict]:
    """p50/p99 ms of `n` lookups of every feature of the view, hot vs normal entities."""
    registry = load_definitions(DEFINITIONS)
    view = registry.feature_views[VIEW]
    refs = resolve_features(registry, [f"{VIEW}:{f.name}" for f in view.features])
    client = connect(url)
    rng = random.Random(7)
    (key,) = view.entity.join_keys  # one join key (merchant_id)
    try:
        for entity in (HOT, *normal[:20]):  # warm up connections and caches
            await online_features(client, refs, {key: [entity]}, t, 1)
        out = {}
        for label, pick in (("hot", lambda: HOT), ("normal", lambda: rng.choice(normal))):
            samples = []
            for _ in range(n):
                entity = pick()
                t0 = time.perf_counter()
                await online_features(client, refs, {key: [entity]}, t, 1)
                samples.append((time.perf_counter() - t0) * 1000)
            out[label] = {
                "p50_ms": float(np.percentile(samples, 50)),
                "p99_ms": float(np.percentile(samples, 99)),
            }
        columns = await online_features(client, refs, {key: [HOT]}, t, 1)
        served = {c.name: c.values[0] for c in columns if c.name != key}
        if horizon is not None:  # an as_of before the hot entity's horizon: refused, named
            try:
                await online_features(client, refs, {key: [HOT]}, horizon - 60.0, 1)
            except RequestError as refused:
                out["refused_before_horizon"] = str(refused)
    finally:
        await client.aclose()
    return out, served


def against_brute_force(events: list[dict], t: float, served: dict[str, Any]) -> dict:
    """The hot merchant's served values against the brute force, feature by feature."""
    registry = load_definitions(DEFINITIONS)
    view = registry.feature_views[VIEW]
    mine = [e for e in events if e["merchant_id"] == HOT]
    checked = {}
    for feature in view.features:
        # only the events that can be in the window go through the exact (slow) filter
        low = -np.inf if feature.window_s is None else t - feature.window_s - 2 * 86400
        chosen = [
            Event(
                _ts(e),
                i,
                e,
                None if feature.where is None else (feature.where.evaluate_row(e),),
            )
            for i, e in enumerate(mine)
            if _ts(e) >= low
        ]
        expected = brute_force(chosen, t, feature)
        values = [e.values.get(feature.column) for e in chosen] if feature.column else []
        checked[feature.name] = {
            "served": served[feature.name],
            "brute_force": expected,
            "equal": matches(feature.aggregation, served[feature.name], expected, values),
        }
    return checked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--hot-share", type=float, default=0.75)
    parser.add_argument("--lookups", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    uniform, skewed = streams(args.events, args.hot_share, args.seed)
    merchants = sorted({e["merchant_id"] for e in skewed} - {HOT})
    t = max(_ts(e) for e in skewed) + 1.0
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "events": len(skewed),
        "hot_events": sum(e["merchant_id"] == HOT for e in skewed),
    }
    with tempfile.TemporaryDirectory(prefix="hot-keys-") as tmp:
        work = Path(tmp)
        uniform_run, stack = ingest(uniform, work, "uniform")
        stack.__exit__(None, None, None)
        result["uniform"] = uniform_run
        print(json.dumps({"uniform": uniform_run}), flush=True)
        skewed_run, stack = ingest(skewed, work, "skewed")
        try:
            result["skewed"] = skewed_run
            print(json.dumps({"skewed": skewed_run}), flush=True)
            result["redis"] = redis_bytes(stack.redis.url, merchants)
            print(json.dumps({"redis": result["redis"]}), flush=True)
            timing, served = asyncio.run(
                lookups(stack.redis.url, t, merchants, args.lookups, result["redis"]["hot_horizon"])
            )
            result["lookups"] = timing
            print(json.dumps({"lookups": timing}), flush=True)
        finally:
            stack.__exit__(None, None, None)
    result["values"] = against_brute_force(skewed, t, served)
    result["all_equal"] = all(v["equal"] for v in result["values"].values())
    result["ratios"] = {
        "hot_over_normal_p99": timing["hot"]["p99_ms"] / timing["normal"]["p99_ms"],
        "skewed_over_uniform_events_per_s": skewed_run["events_per_s"]
        / (uniform_run["events_per_s"] or float("nan")),
    }
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
