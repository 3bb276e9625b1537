"""An invalid file in `definitions/`: refused, said so on /health, and never a crash loop.

A running worker and API keep the definitions they run and show `refused` with the
file and the reason on /health. A worker or API started beside the bad file runs the
last definitions a worker accepted (recorded in Redis when it started on them,
`online.accepted_definitions`), says so in its log and on /health, and ingests.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from feature_service.core.config import Settings
from feature_service.embedded import EmbeddedStack
from feature_service.embedded.processes import free_port
from feature_service.online.accepted_definitions import last_accepted
from tests.conditions import wait_for
from tests.integration.streaming import make_events, produce, start_worker, stats, write_definitions

pytestmark = pytest.mark.integration

BAD = """feature_views:
  - name: broken_view
    source: no_such_source
    entity: customer
    features:
      - {name: n, aggregation: count}
"""


def worker_health(port: int) -> dict[str, Any]:
    try:
        body: dict[str, Any] = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return body


def refused(health: dict[str, Any], *words: str) -> bool:
    definitions = health.get("definitions") or {}
    detail = definitions.get("detail", "")
    return definitions.get("status") == "refused" and all(w in detail for w in words)


def test_a_bad_file_is_refused_on_health_and_a_worker_started_beside_it_runs_the_last_accepted(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from feature_service.api.app import create_app

    definitions, registry = write_definitions(tmp_path)
    view = next(iter(registry.feature_views))
    offline = tmp_path / "offline"
    group = f"fs-test-{uuid.uuid5(uuid.NAMESPACE_URL, str(definitions))}"  # start_worker's
    settings = Settings(
        redis_url=stack.redis.url,
        broker_url=stack.broker.bootstrap,
        definitions=definitions,
        offline_uri=str(offline),
        definitions_poll_s=0.2,
        consumer_group=group,
    )
    client = redis.Redis.from_url(stack.redis.url)
    events = make_events(600, seed=23, customers=30)
    port = free_port()
    env = {"FS_HEALTH_PORT": str(port), "FS_DEFINITIONS_POLL_S": "0.2"}
    worker = start_worker(stack, definitions, offline, extra_env=env)
    try:
        produce(stack, registry, events[:200])
        wait_for(lambda: stats(client, registry).get("events", 0) >= 200, 120, "events", worker)
        accepted = last_accepted(settings)
        assert accepted is not None and list(accepted.files) == ["defs.yaml"]

        with TestClient(create_app(settings)) as api:
            assert api.get("/health").json()["definitions"]["status"] == "ok"
            (definitions / "bad.yaml").write_text(BAD)

            wait_for(
                lambda: refused(worker_health(port), "bad.yaml", "unknown source"),
                60,
                "the worker to show the refusal",
                worker,
            )
            wait_for(
                lambda: refused(api.get("/health").json(), "bad.yaml", "no_such_source"),
                30,
                "the API to show the refusal",
            )
            body = api.get("/health").json()
            assert body["status"] == "degraded"
            assert view in {v["name"] for v in api.get("/feature-views").json()}
        assert worker.alive()
    finally:
        worker.stop()

    # started beside the bad file: runs the last accepted definitions, says so, ingests
    beside = start_worker(stack, definitions, offline, name="beside-bad", extra_env=env)
    try:
        produce(stack, registry, events[200:400])
        wait_for(lambda: stats(client, registry).get("events", 0) >= 400, 120, "events", beside)
        health = worker_health(port)
        assert refused(health, "bad.yaml", "last accepted"), health
        assert "running the last accepted definitions" in beside.log_tail(200)

        # an API started beside it serves them too, and says so
        with TestClient(create_app(settings)) as api:
            body = api.get("/health").json()
            assert refused(body, "bad.yaml", "last accepted"), body
            assert view in {v["name"] for v in api.get("/feature-views").json()}

        # the file fixed: the worker restarts on the definitions on disk (code 0)
        (definitions / "bad.yaml").unlink()
        wait_for(lambda: not beside.alive(), 60, "the worker to stop for the new definitions")
        assert beside.returncode() == 0, beside.log_tail(40)
    finally:
        beside.stop()

    fixed = start_worker(stack, definitions, offline, name="fixed", extra_env=env)
    try:
        produce(stack, registry, events[400:])
        wait_for(lambda: stats(client, registry).get("events", 0) >= 600, 120, "events", fixed)
        wait_for(lambda: worker_health(port).get("definitions") == {"status": "ok"}, 30, "ok")
    finally:
        fixed.stop()


def test_a_worker_beside_a_bad_file_with_nothing_accepted_exits_with_the_reason(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    definitions, _ = write_definitions(tmp_path)
    (definitions / "bad.yaml").write_text(BAD)
    worker = start_worker(stack, definitions, tmp_path / "offline", name="nothing-accepted")
    try:
        wait_for(lambda: not worker.alive(), 60, "the worker to refuse the definitions")
    finally:
        worker.stop()
    assert worker.returncode() == 1
    tail = worker.log_tail(20)
    assert "bad.yaml: feature_views[0].source: unknown source 'no_such_source'" in tail
    assert "Traceback" not in tail
