"""/status, /metrics, /health, request ids, JSON logs and `feature-service status`,
over what a real worker did with real events in the real broker and Redis."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from feature_service.api.app import create_app
from feature_service.core.config import Settings
from feature_service.embedded import EmbeddedStack, ManagedProcess
from feature_service.embedded.processes import free_port
from feature_service.observability.logs import JsonFormatter
from tests.conditions import wait_for
from tests.integration.streaming import (
    make_events,
    offline_events,
    produce,
    start_worker,
    stats,
    write_definitions,
)

pytestmark = pytest.mark.integration
N_EVENTS = 1_200


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, or None."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, rest = head.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if sample == name and got == want:
            return float(value)
    return None


def test_status_metrics_health_and_cli_report_what_the_worker_did(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    definitions, registry = write_definitions(tmp_path)
    source = next(iter(registry.sources.values()))
    view = next(iter(registry.feature_views.values()))
    events = make_events(N_EVENTS, seed=5, customers=25, bad_every=100)
    client = redis.Redis.from_url(stack.redis.url)
    offline = tmp_path / "offline"
    settings = Settings(redis_url=stack.redis.url, broker_url=stack.broker.bootstrap)
    metrics_port = free_port()
    worker = start_worker_with_metrics(stack, definitions, offline, metrics_port)
    try:
        produce(stack, registry, events)

        def all_counted() -> bool:
            s = stats(client, registry)
            return s.get("events", 0) + s.get("dlq", 0) >= N_EVENTS

        wait_for(all_counted, 120, "events", worker)
        counters = stats(client, registry)
        with TestClient(create_app(settings, registry)) as api:
            # The heartbeat comes every 2 s; the counters are already final.
            # On Kafka a second rebalance follows the first join (Faust's leader topic
            # appears), and a beat written meanwhile names no partition: wait for a full one.
            wait_for(
                lambda: any(w["partitions"] for w in api.get("/status").json()["workers"]),
                60,
                "a heartbeat naming the worker's partitions",
                worker,
            )
            body = api.get("/status").json()
            (got,) = body["sources"]
            assert got["source"] == source.name and got["views"] == [view.name]
            assert got["events"] == counters["events"] == N_EVENTS - N_EVENTS // 100
            assert got["dlq"] == counters["dlq"] == N_EVENTS // 100
            assert got["late"] == {view.name: counters.get(f"late:{view.name}", 0)}
            assert got["workers"] == 1 and got["events_per_s"] is not None
            # Everything produced is in the state: no lag, on every partition.
            assert got["lag"] == 0
            assert [p["partition"] for p in got["partitions"]] == [0, 1, 2]
            assert sum(p["end_offset"] for p in got["partitions"]) == N_EVENTS
            assert all(p["committed"] == p["end_offset"] for p in got["partitions"])
            newest = float(offline_events(registry, offline)["event_ts"].max())
            assert got["newest_event_ts"] == pytest.approx(newest, abs=1e-3)
            assert got["freshness_s"] == pytest.approx(body["at"] - newest, abs=1e-3)
            (beat,) = body["workers"]
            assert beat["pid"] == worker.pid
            assert sorted(beat["partitions"]) == [f"{source.topic}:{p}" for p in range(3)]

            health = api.get("/health")
            assert health.status_code == 200
            assert health.json()["status"] == "ok"
            assert health.json()["dependencies"]["worker"]["status"] == "ok"
            assert health.json()["dependencies"]["worker"]["lag"] == 0

            entities = api.get(f"/feature-views/{view.name}/entities", params={"limit": 10})
            assert entities.status_code == 200
            sample = entities.json()["entities"]
            assert len(sample) == 10 and sample == sorted(sample)
            assert set(sample) <= {e["customer_id"] for e in events if isinstance(e, dict)}
            assert api.get("/feature-views/nope/entities").status_code == 404

            lookup = {"features": [f"{view.name}:n_1h"], "entities": {"customer_id": ["c1"]}}
            assert api.post("/get-online-features", json=lookup).status_code == 200
            assert api.post("/get-online-features", json={"features": ["x"]}).status_code == 422
            text = api.get("/metrics").text
            assert metric(text, "fs_events_total", source=source.name) == counters["events"]
            assert metric(text, "fs_dlq_events_total", source=source.name) == counters["dlq"]
            assert metric(text, "fs_consumer_lag", topic=source.topic, partition="0") == 0
            assert metric(text, "fs_live_workers", source=source.name) == 1
            assert metric(text, "fs_redis_up") == 1 and metric(text, "fs_broker_up") == 1
            ok = dict(endpoint="/get-online-features", method="POST")
            assert (metric(text, "fs_api_requests_total", status="200", **ok) or 0) >= 1
            assert (metric(text, "fs_api_requests_total", status="422", **ok) or 0) >= 1
            assert (metric(text, "fs_api_request_duration_seconds_count", **ok) or 0) >= 2
            assert metric(text, "fs_api_request_duration_seconds_bucket", le="+Inf", **ok)

            cli = run_status_cli(stack, definitions)
            assert cli.returncode == 0, cli.stderr
            printed = json.loads(cli.stdout)["sources"][0]
            assert (printed["events"], printed["dlq"], printed["lag"]) == (
                got["events"],
                got["dlq"],
                0,
            )
            # The worker's own Prometheus endpoint counts the same events.
            scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
            assert (
                metric(scraped, "fs_worker_events_total", source=source.name) == counters["events"]
            )
            assert (
                metric(scraped, "fs_worker_dlq_events_total", source=source.name) == counters["dlq"]
            )
            assert (metric(scraped, "fs_worker_heartbeats_total") or 0) >= 1

            table = run_status_cli(stack, definitions, "--no-json")
            assert table.returncode == 0, table.stderr
            assert view.name in table.stdout and str(got["events"]) in table.stdout

            # A worker stopped cleanly leaves: the API still answers, degraded, not 503.
            worker.stop()
            health = api.get("/health")
            assert health.status_code == 200, health.text
            assert health.json()["status"] == "degraded"
            assert health.json()["dependencies"]["worker"]["status"] == "down"
            assert source.name in health.json()["dependencies"]["worker"]["detail"]
    finally:
        worker.stop()
        client.close()


def start_worker_with_metrics(
    stack: EmbeddedStack, definitions: Path, offline: Path, port: int
) -> ManagedProcess:
    metrics = {"FS_WORKER_METRICS_PORT": str(port)}
    return start_worker(stack, definitions, offline, "worker", metrics)


def run_status_cli(
    stack: EmbeddedStack, definitions: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FS_")}
    env.update(FS_REDIS_URL=stack.redis.url, FS_BROKER_URL=stack.broker.bootstrap, COLUMNS="120")
    flags = ["--json"] if not args else [a for a in args if a != "--no-json"]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "feature_service.cli.main",
            "status",
            "-d",
            str(definitions),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_requests_carry_an_id_in_and_out_and_are_logged_as_json(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    _, registry = write_definitions(tmp_path)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("feature_service.api.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        with TestClient(create_app(Settings(redis_url=stack.redis.url), registry)) as api:
            given = api.get("/feature-views", headers={"X-Request-ID": "req-42.a"})
            made = api.get("/feature-views/nope")
            refused = api.get("/feature-views", headers={"X-Request-ID": "bad id\n"})
    finally:
        access.removeHandler(handler)
        access.setLevel(logging.NOTSET)
    assert given.headers["x-request-id"] == "req-42.a"
    made_id, replaced_id = made.headers["x-request-id"], refused.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9]+", made_id) and made_id != replaced_id
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9]+", replaced_id)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["request_id"], x["status"], x["endpoint"]) for x in lines] == [
        ("req-42.a", 200, "/feature-views"),
        (made.headers["x-request-id"], 404, "/feature-views/{name}"),
        (refused.headers["x-request-id"], 200, "/feature-views"),
    ]
    assert all(x["level"] == "info" and x["duration_ms"] >= 0 for x in lines)


def test_ui_page_and_its_files_are_served_without_a_cdn(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    _, registry = write_definitions(tmp_path)
    with TestClient(create_app(Settings(redis_url=stack.redis.url), registry)) as api:
        page = api.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assets = re.findall(r'(?:src|href)="(/ui/[^"]+)"', page.text)
        assert sorted(assets) == ["/ui/app.js", "/ui/style.css"]
        for asset in assets:
            assert api.get(asset).status_code == 200
        for text in (page.text, api.get("/ui/app.js").text, api.get("/ui/style.css").text):
            assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text)
