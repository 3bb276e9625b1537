"""Online lookup latency: POST /get-online-features against one uvicorn process.

    .venv/bin/python benchmarks/online.py --requests 2000

Starts the embedded stack (`feature-service up` pieces: broker, Redis, worker, API),
replays the bundled sample, then times sequential requests from one client over HTTP
(keep-alive) for 1 entity x all features of customer_txn (22) and 100 entities x 22,
evaluated at an `as_of` inside the sample so windows are not empty. Prints p50/p90/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from feature_service.definitions import load_definitions  # noqa: E402
from feature_service.embedded import EmbeddedStack  # noqa: E402
from feature_service.online.redis_layout import stats_key  # noqa: E402
from feature_service.stream.event_files import read_event_messages  # noqa: E402
from feature_service.stream.producer import produce_messages  # noqa: E402
from feature_service.stream.topics import ensure_topics  # noqa: E402

SAMPLE = ROOT / "definitions" / "sample" / "transactions.jsonl"
AS_OF = "2026-11-03T12:00:00Z"


def percentiles(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=100)
    return {"p50_ms": q[49] * 1000, "p90_ms": q[89] * 1000, "p99_ms": q[98] * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    registry = load_definitions(ROOT / "definitions")
    view = registry.feature_views["customer_txn"]
    features = [f"customer_txn:{f.name}" for f in view.features]
    source = registry.sources["transactions"]
    customers = sorted(
        {
            json.loads(line)["customer_id"]
            for line in SAMPLE.open()
            if '"customer_id"' in line and line.startswith("{") and line.rstrip().endswith("}")
        }
    )
    with tempfile.TemporaryDirectory() as tmp, EmbeddedStack(Path(tmp) / "stores") as stack:
        asyncio.run(ensure_topics(stack.broker.bootstrap, registry))
        stack.worker = stack.worker_process(ROOT / "definitions").start()
        stack.start_api(None, ROOT / "definitions")
        messages = list(read_event_messages(SAMPLE, source.key))
        asyncio.run(produce_messages(stack.broker.bootstrap, source, messages))
        client = redis.Redis.from_url(stack.redis.url)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            raw = client.hgetall(stats_key("transactions"))
            if int(raw.get(b"events", 0)) + int(raw.get(b"dlq", 0)) >= len(messages):
                break
            time.sleep(0.2)
        results = {}
        with httpx.Client(base_url=stack.api_url, timeout=10) as http:
            for label, n in (("1 x 22", 1), ("100 x 22", 100)):
                timings = []
                for i in range(args.requests if n == 1 else args.requests // 10):
                    entities = [customers[(i + k) % len(customers)] for k in range(n)]
                    body = {
                        "features": features,
                        "entities": {"customer_id": entities},
                        "as_of": AS_OF,
                    }
                    start = time.perf_counter()
                    response = http.post("/get-online-features", json=body)
                    timings.append(time.perf_counter() - start)
                    assert response.status_code == 200, response.text
                stats = percentiles(timings[len(timings) // 10 :])  # drop warm-up
                stats["entity_rows_per_s"] = n * len(timings) / sum(timings)
                results[label] = stats
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
