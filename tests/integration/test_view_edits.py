"""Editing a view that already has online state: refused everywhere, never a wedge or a 500.

A feature view's entity hashes carry the state layout they were written with. A change
that alters it (two features added here) cannot be merged into that state, so
`validate` and `apply` refuse it, a worker that finds it on disk keeps running the
previous definitions (and says so on /health), the API keeps its registry, and a lookup
of state written by another layout answers 503 naming the view and the fix.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from feature_service.core.config import Settings
from feature_service.definitions import load_definitions
from feature_service.embedded import EmbeddedStack, ManagedProcess
from feature_service.embedded.processes import free_port
from feature_service.online.redis_layout import entity_key, view_layout
from tests.conditions import wait_for
from tests.entity_state import EntityState
from tests.integration.streaming import (
    assert_online_equals_brute_force,
    expected_events,
    make_events,
    offline_events,
    online_state,
    produce,
    start_worker,
    stats,
    write_definitions,
)

pytestmark = pytest.mark.integration

TWO_MORE = (
    "      - {name: n_6h, aggregation: count, window: 6h}\n"
    "      - {name: max_amount, column: amount, aggregation: max}\n"
)


def with_two_features(text: str) -> str:
    """The definitions with two features added at the end of the (only) view."""
    return text.rstrip("\n") + "\n" + TWO_MORE


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "feature_service.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def worker_health(port: int) -> dict[str, Any] | None:
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
    except httpx.HTTPError:
        return None
    body: dict[str, Any] = answer.json()
    return body


def refused_on_worker_health(port: int, view: str) -> bool:
    body = worker_health(port) or {}
    definitions = body.get("definitions") or {}
    return definitions.get("status") == "refused" and view in definitions.get("detail", "")


def test_validate_and_apply_refuse_a_view_with_two_features_added(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    definitions, registry = write_definitions(tmp_path)
    view = next(iter(registry.feature_views))
    deployed = (definitions / "defs.yaml").read_text()
    offline = tmp_path / "offline"
    client = redis.Redis.from_url(stack.redis.url)
    worker = start_worker(stack, definitions, offline)
    try:
        produce(stack, registry, make_events(300, seed=5, customers=20))
        wait_for(lambda: stats(client, registry).get("events", 0) >= 300, 120, "events", worker)
    finally:
        worker.stop()

    edited = tmp_path / "edited" / "defs.yaml"
    edited.parent.mkdir()
    edited.write_text(with_two_features(deployed))
    env = {**stack.env(), "FS_DEFINITIONS": str(definitions), "FS_OFFLINE_URI": str(offline)}

    # validate compares with the layouts the worker recorded in Redis
    checked = cli("validate", str(edited), env=env)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    lines = checked.stderr.strip().splitlines()
    assert len(lines) == 1, checked.stderr
    assert f"feature view {view!r}" in lines[0]
    assert "features added: n_6h, max_amount" in lines[0]
    assert f"feature-service backfill --view {view}_v2" in lines[0]
    assert "Traceback" not in checked.stderr

    # apply refuses it too, and copies nothing
    applied = cli("apply", str(edited), "--definitions", str(definitions), env=env)
    assert applied.returncode == 1, applied.stdout + applied.stderr
    assert "features added: n_6h, max_amount" in applied.stderr
    assert f"feature-service backfill --view {view}_v2" in applied.stderr
    assert sorted(p.name for p in definitions.iterdir()) == ["defs.yaml"]
    assert (definitions / "defs.yaml").read_text() == deployed

    # with Redis unreachable, apply still compares with the deployed definitions
    away = {**env, "FS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    offline_apply = cli("apply", str(edited), "--definitions", str(definitions), env=away)
    assert offline_apply.returncode == 1, offline_apply.stdout + offline_apply.stderr
    assert "features added: n_6h, max_amount" in offline_apply.stderr
    assert (definitions / "defs.yaml").read_text() == deployed

    # a worker started on them does not run them: one error line and exit code 1
    refusing = start_worker(stack, edited.parent, offline, name="refusing-worker")
    try:
        wait_for(lambda: not refusing.alive(), 60, "the worker to refuse the definitions")
    finally:
        refusing.stop()
    assert refusing.returncode() == 1, refusing.log_tail(20)
    errors = [line for line in refusing.log_tail(50).splitlines() if "error:" in line]
    assert len(errors) == 1 and "features added: n_6h, max_amount" in errors[0], errors
    assert stats(client, registry)["events"] == 300

    # a change that keeps the layout (a description) is still fine
    described = tmp_path / "described" / "defs.yaml"
    described.parent.mkdir()
    described.write_text(deployed.replace("ttl: 30d", "ttl: 30d\n    description: edited"))
    assert load_definitions(described).feature_views[view].description == "edited"
    ok = cli("validate", str(described), env=env)
    assert ok.returncode == 0 and ok.stdout.startswith("ok:"), ok.stdout + ok.stderr


def test_a_hand_edited_view_is_refused_while_worker_and_api_keep_serving_it(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from feature_service.api.app import create_app

    definitions, registry = write_definitions(tmp_path)
    view = next(iter(registry.feature_views.values()))
    offline = tmp_path / "offline"
    port = free_port()
    env = {"FS_HEALTH_PORT": str(port), "FS_DEFINITIONS_POLL_S": "0.2"}
    worker: ManagedProcess = start_worker(stack, definitions, offline, extra_env=env)
    client = redis.Redis.from_url(stack.redis.url)
    events = make_events(4000, seed=17, customers=50)
    settings = Settings(
        redis_url=stack.redis.url,
        broker_url=stack.broker.bootstrap,
        definitions=definitions,
        offline_uri=str(offline),
        definitions_poll_s=0.2,
    )
    try:
        produce(stack, registry, events[:2000])
        wait_for(lambda: stats(client, registry).get("events", 0) >= 2000, 120, "events", worker)
        with TestClient(create_app(settings)) as api:
            assert api.get("/health").json()["definitions"]["status"] == "ok"
            # edited by hand, not through apply: two features added to the view
            path = definitions / "defs.yaml"
            path.write_text(with_two_features(path.read_text()))

            wait_for(lambda: refused_on_worker_health(port, view.name), 60, "refusal", worker)
            health = worker_health(port) or {}
            assert "features added: n_6h, max_amount" in health["definitions"]["detail"]

            def api_refused() -> bool:
                body = api.get("/health").json()
                return body["definitions"]["status"] == "refused"

            wait_for(api_refused, 30, "the API to refuse the definitions")
            body = api.get("/health").json()
            assert view.name in body["definitions"]["detail"] and body["status"] == "degraded"
            served = api.get(f"/feature-views/{view.name}").json()
            assert "n_6h" not in {f["name"] for f in served["features"]}

            # no wedge: a later batch is committed, counted exactly for the old features
            produce(stack, registry, events[2000:])
            wait_for(lambda: stats(client, registry).get("events", 0) >= 4000, 120, "more", worker)
            assert worker.alive()

            log = offline_events(registry, offline)
            expected = expected_events(view, log)
            newest = float(log["event_ts"].max())
            sample = dict(random.Random(3).sample(sorted(expected.items()), 15))
            times = [newest, newest - 1800.5]
            assert assert_online_equals_brute_force(client, view, sample, times) > 0

            # the API answers the old features of the view, from the previous registry
            entities = sorted(sample)
            answer = api.post(
                "/get-online-features",
                json={
                    "features": [f"{view.name}:n_1h", f"{view.name}:amount_sum_1d"],
                    "entities": {"customer_id": entities},
                    "as_of": newest,
                },
            )
            assert answer.status_code == 200, answer.text
            results = answer.json()["results"]
            for i, entity in enumerate(entities):
                want = online_state(client, view, entity).evaluate(newest)
                assert results[1]["values"][i] == want["n_1h"]
                assert results[2]["values"][i] == pytest.approx(want["amount_sum_1d"], rel=1e-9)
    finally:
        worker.stop()
    assert worker.log_path is not None
    errors = [
        line
        for line in worker.log_path.read_text().splitlines()
        if line.startswith("{") and json.loads(line).get("level") == "error"
    ]
    assert len(errors) == 1 and "refused" in errors[0], errors  # once, not on every poll


def test_a_lookup_of_state_written_by_another_layout_answers_503(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from feature_service.api.app import create_app

    definitions, registry = write_definitions(tmp_path)
    view = next(iter(registry.feature_views.values()))
    # state of one entity, written with the view's current layout (as the worker does)
    state = EntityState(view_layout(view))
    for i, ts in enumerate([1_790_000_000.0, 1_790_000_100.0]):
        state.add(ts, i, {"amount": 5.0, "category": "fuel", "online": False})
    client = redis.Redis.from_url(stack.redis.url)
    client.set(entity_key(view.name, "c1"), state.to_bytes())

    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / "defs.yaml").write_text(with_two_features((definitions / "defs.yaml").read_text()))
    settings = Settings(
        redis_url=stack.redis.url, definitions=edited, definitions_poll_s=0, offline_uri="x"
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as api:
        answer = api.post(
            "/get-online-features",
            json={
                "features": [f"{view.name}:n_1h"],  # an old feature, not one of the new
                "entities": {"customer_id": ["c1"]},
                "as_of": 1_790_000_200.0,
            },
        )
        assert answer.status_code == 503, answer.text
        detail = answer.json()["detail"]
        assert f"feature view {view.name!r}" in detail
        assert "feature-service backfill --view" in detail
        # an entity without state is not affected
        fine = api.post(
            "/get-online-features",
            json={"features": [f"{view.name}:n_1h"], "entities": {"customer_id": ["nobody"]}},
        )
        assert fine.status_code == 200 and fine.json()["results"][1]["statuses"] == ["NOT_FOUND"]
