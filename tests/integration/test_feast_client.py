"""Feast 0.67's own Python client reads our lookup API through its remote online store.

A real worker fills the real Redis from the broker; a real `feature-service serve`
answers; `feature-service export feast` writes the Feast repository, `feast apply`
(Feast's CLI, in its own venv) builds its registry, and Feast's `FeatureStore` asks
for features: feature lists and a feature service, `full_feature_names` on and off,
known, unknown and expired entities, two join keys (one a string, one an integer),
a view of the (customer, merchant) pair (an entity with `join_keys: [customer_id,
merchant_id]`, which Feast sees as a view of two entities), Feast's `online_read` too,
and the errors. Every answer must equal our API's.

Values move with time (windows slide by their hop, `time_since_last` grows), and Feast
cannot send `as_of`, so each case asks our API right before and right after Feast: a
case whose two answers differ (a hop boundary passed in between) is asked again;
`time_since_last` must lie between them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from benchmarks.feast_env import feast_cli, feast_python
from feature_service.definitions import Registry, load_definitions
from feature_service.embedded import EmbeddedStack
from tests.conditions import wait_for
from tests.integration.streaming import produce, start_api, start_worker, stats

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # Feast's venv, once

DRIVER = Path(__file__).with_name("feast_driver.py")
API_KEY = "feast-test-key"
KEY_ENV = "FS_TEST_FEAST_API_KEY"

DEFINITIONS = """
entities:
  - {{name: customer, join_key: customer_id}}
  - {{name: merchant, join_key: merchant_id}}
  - {{name: pair, join_keys: [customer_id, merchant_id]}}
sources:
  - name: {source}
    topic: {topic}
    timestamp_field: ts
    key: customer_id
    partitions: 2
    schema: {{customer_id: string, merchant_id: int, amount: float, items: int,
              category: string, online: bool, ts: timestamp}}
feature_views:
  - name: {cust}
    source: {source}
    entity: customer
    ttl: 2d
    features:
      - {{name: n_1h, aggregation: count, window: 1h}}
      - {{column: amount, aggregations: [sum, mean, max], windows: [1h, 1d]}}
      - {{column: category, aggregation: count_distinct, window: 1d}}
      - {{name: last_category, column: category, aggregation: last}}
      - {{name: last_online, column: online, aggregation: last}}
      - {{name: first_items, column: items, aggregation: first}}
      - {{name: since_last, aggregation: time_since_last}}
      - {{name: online_1d, aggregation: count, window: 1d, where: "online"}}
      - {{name: last_3_amounts, column: amount, aggregation: last_k, k: 3}}
      - {{name: top_categories_1d, column: category, aggregation: frequent_k, k: 2, window: 1d}}
      - {{name: mean_ratio_1h_1d, expression: "amount_mean_1h / amount_mean_1d"}}
  - name: {merch}
    source: {source}
    entity: merchant
    ttl: 30d
    features:
      - {{name: n_1h, aggregation: count, window: 1h}}
      - {{column: amount, aggregations: [sum, mean], windows: [1d]}}
      - {{name: last_amount, column: amount, aggregation: last}}
  - name: {pair}
    source: {source}
    entity: pair
    ttl: 2d
    features:
      - {{name: n_1d, aggregation: count, window: 1d}}
      - {{name: amount_sum_1d, column: amount, aggregation: sum, window: 1d}}
      - {{name: last_category, column: category, aggregation: last}}
feature_services:
  - name: {service}
    features: [{cust}:n_1h, {cust}:amount_sum_1d, {merch}:n_1h, {cust}:last_category,
               {merch}:amount_mean_1d, {cust}:mean_ratio_1h_1d]
"""

CATEGORIES = ["grocery", "fuel", "travel", "online"]


def make_events(now: float, n: int = 3_000) -> list[dict[str, Any]]:
    """Events of the last two days (some amounts null), in time order; customer `stale`
    only three days ago (past its view's ttl: OUTSIDE_MAX_AGE), `quiet` 30 hours ago
    (empty 1h windows: NULL_VALUE means)."""
    rng = np.random.default_rng(14)
    ts = now - rng.uniform(60, 2 * 86400, n)
    events = [
        {
            "customer_id": f"c{rng.integers(0, 30)}",
            "merchant_id": int(rng.integers(1, 11)),
            "amount": None if rng.random() < 0.03 else round(float(rng.lognormal(3, 1)), 2),
            "items": int(rng.integers(1, 6)),
            "category": CATEGORIES[int(rng.integers(0, len(CATEGORIES)))],
            "online": bool(rng.random() < 0.3),
            "ts": round(float(t), 3),
        }
        for t in ts
    ]
    for customer, age in (("stale", 3 * 86400), ("quiet", 30 * 3600)):
        for i in range(3):
            events.append(
                {"customer_id": customer, "merchant_id": 10, "amount": 10.0 + i, "items": i,
                 "category": "fuel", "online": False, "ts": now - age - 60 * i}
            )  # fmt: skip
    return sorted(events, key=lambda e: e["ts"])


class FeastClient:
    """Feast's client in its own process (`feast_driver.py`), one JSON line per call."""

    def __init__(self, python: str, repo: Path, log: Path) -> None:
        env = {**os.environ, KEY_ENV: API_KEY, "FEAST_USAGE": "False"}
        self._stderr = log.open("w")
        self.process = subprocess.Popen(
            [python, str(DRIVER), str(repo)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        self._log = log
        assert self._read() == {"ready": True}

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"Feast's client exited:\n{self._log.read_text()[-4000:]}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, **request: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._stderr.close()


def run(command: list[str], cwd: Path | None = None, timeout: float = 300) -> str:
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    assert done.returncode == 0, f"{command}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def world(
    stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Registry, FeastClient, dict[str, str]]]:
    """Events in Redis through the worker, our API serving them, Feast's client on it."""
    python = feast_python()  # first: pip may take minutes, once per machine
    tmp: Path = tmp_path_factory.mktemp("feast-client")
    tag = uuid.uuid4().hex[:8]
    names = {
        "source": f"tx_{tag}", "topic": f"tx-{tag}", "cust": f"cust_{tag}",
        "merch": f"merch_{tag}", "pair": f"pair_{tag}", "service": f"model_{tag}",
    }  # fmt: skip
    definitions = tmp / "defs"
    definitions.mkdir()
    (definitions / "defs.yaml").write_text(DEFINITIONS.format(**names))
    registry = load_definitions(definitions)
    events = make_events(time.time())
    offline = tmp / "offline"
    client = redis.Redis.from_url(stack.redis.url)
    worker = start_worker(stack, definitions, offline)
    try:
        produce(stack, registry, list(events))
        wait_for(
            lambda: stats(client, registry).get("events", 0) >= len(events), 120, "events", worker
        )
    finally:
        worker.stop()
        client.close()
    api, url = start_api(stack, definitions, tmp, "api-feast", FS_API_KEYS=json.dumps([API_KEY]))
    feast = None
    try:
        wait_for(lambda: _live(url), 60, "API serving", api)
        repo = tmp / "feast_repo"
        printed = run(
            [sys.executable, "-m", "feature_service.cli.main", "export", "feast",
             "--definitions", str(definitions), "--api", url, "--api-key-env", KEY_ENV,
             "--project", f"fs_{tag}", "-o", str(repo)]
        )  # fmt: skip
        assert "3 feature views, 23 features, 1 feature service" in printed, printed
        applied = run([feast_cli(python), "apply", "--skip-source-validation"], cwd=repo)
        assert all(names[v] in applied for v in ("cust", "merch", "pair")), applied
        feast = FeastClient(python, repo, tmp / "feast_driver.log")
        yield url, registry, feast, names
    finally:
        if feast is not None:
            feast.close()
        api.stop()


def _live(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/live", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def ours(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    response = httpx.post(
        f"{url}/get-online-features", json=body, headers={"X-API-Key": API_KEY}, timeout=10
    )
    return response.status_code, response.json()


def columns(answer: dict[str, Any]) -> dict[str, list[Any]]:
    names = answer["metadata"]["feature_names"]
    return {n: r["values"] for n, r in zip(names, answer["results"], strict=True)}


def statuses(answer: dict[str, Any]) -> dict[str, list[str]]:
    names = answer["metadata"]["feature_names"]
    return {n: r["statuses"] for n, r in zip(names, answer["results"], strict=True)}


def our_body(request: dict[str, Any]) -> dict[str, Any]:
    """Our API's own request for what Feast is asked (entity rows as columns)."""
    rows = request["entity_rows"]
    body: dict[str, Any] = {
        "entities": {key: [row[key] for row in rows] for key in rows[0]},
        "full_feature_names": request["full_feature_names"],
    }
    if "feature_service" in request:
        body["feature_service"] = request["feature_service"]
    else:
        body["features"] = request["features"]
    return body


def feast_equals_ours(
    url: str, feast: FeastClient, request: dict[str, Any], growing: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Feast's answer equals ours, asked right before and after it; columns named in
    `growing` (time_since_last) lie between the two. Returns our answer."""
    body = our_body(request)
    for _ in range(3):
        status, before = ours(url, body)
        assert status == 200, before
        got = feast.ask(call="get_online_features", **request)
        _, after = ours(url, body)
        steady = {k: v for k, v in columns(before).items() if k not in growing}
        if steady != {k: v for k, v in columns(after).items() if k not in growing}:
            continue  # a window slid by a hop in between: ask again
        assert "error" not in got, got
        assert statuses(before) == statuses(after) == got["statuses"]
        feast_columns = got["columns"]
        assert list(feast_columns) == before["metadata"]["feature_names"]
        assert {k: v for k, v in feast_columns.items() if k not in growing} == steady
        for name in growing:
            for lo, value, hi in zip(
                columns(before)[name], feast_columns[name], columns(after)[name], strict=True
            ):
                assert (lo is value is hi is None) or lo <= value <= hi, (name, lo, value, hi)
        return dict(before)
    raise AssertionError(f"values kept moving while asking {request}")


def feast_error_equals_ours(
    url: str, feast: FeastClient, request: dict[str, Any], status: int, api_key: str = API_KEY
) -> str:
    """Our API refuses the request with `status`; Feast raises a readable error naming
    the status and our message. Returns the message."""
    response = httpx.post(
        f"{url}/get-online-features",
        json=our_body(request),
        headers={"X-API-Key": api_key},
        timeout=10,
    )
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    got = feast.ask(call="get_online_features", api_key=api_key, **request)
    assert got.get("error") == "RuntimeError", got
    assert got["message"].startswith(f"Failed to get online features: {status} "), got
    assert json.loads(got["message"].split(f"{status} ", 1)[1]) == {"detail": detail}
    return str(detail)


def test_feature_lists_with_short_and_full_names(world) -> None:  # type: ignore[no-untyped-def]
    url, registry, feast, names = world
    view = registry.feature_views[names["cust"]]
    features = [f"{view.name}:{f.name}" for f in view.features]
    rows = [{"customer_id": c} for c in ("c0", "c1", "c2", "nobody", "stale", "quiet")]
    for full in (False, True):
        since = f"{view.name}__since_last" if full else "since_last"
        answer = feast_equals_ours(
            url,
            feast,
            {"features": features, "entity_rows": rows, "full_feature_names": full},
            growing=(since,),
        )
        states = statuses(answer)
        mean = f"{view.name}__amount_mean_1h" if full else "amount_mean_1h"
        assert states[since][:3] == ["PRESENT"] * 3
        assert states[since][3:] == ["NOT_FOUND", "OUTSIDE_MAX_AGE", "PRESENT"]
        assert states[mean][5] == "NULL_VALUE"  # quiet: nothing in the last hour
        assert columns(answer)["customer_id"] == [r["customer_id"] for r in rows]
        assert answer["metadata"]["feature_names"][1:] == [
            f"{view.name}__{f.name}" if full else f.name for f in view.features
        ]
    # typed values survive the trip: ints, floats, strings, booleans
    first = {k: v[0] for k, v in columns(answer).items()}
    assert isinstance(first[f"{view.name}__n_1h"], int)
    assert isinstance(first[f"{view.name}__amount_sum_1d"], float)
    assert isinstance(first[f"{view.name}__last_category"], str)
    assert isinstance(first[f"{view.name}__last_online"], bool)
    assert isinstance(first[f"{view.name}__first_items"], int)
    assert isinstance(first[f"{view.name}__last_3_amounts"], list)  # Array(Float64)
    assert isinstance(first[f"{view.name}__top_categories_1d"], dict)  # Map


def test_feature_service_and_two_join_keys(world) -> None:  # type: ignore[no-untyped-def]
    url, _, feast, names = world
    rows = [
        {"customer_id": "c3", "merchant_id": 4},
        {"customer_id": "c4", "merchant_id": 9},
        {"customer_id": "nobody", "merchant_id": 999},  # neither is known
    ]
    service = {"feature_service": names["service"], "entity_rows": rows}
    answer = feast_equals_ours(url, feast, {**service, "full_feature_names": True})
    assert answer["metadata"]["feature_names"][:2] == ["customer_id", "merchant_id"]
    assert statuses(answer)[f"{names['merch']}__n_1h"] == ["PRESENT", "PRESENT", "NOT_FOUND"]
    # a derived feature in the service: Feast reads it as any other (equal above)
    ratio = columns(answer)[f"{names['cust']}__mean_ratio_1h_1d"]
    assert statuses(answer)[f"{names['cust']}__mean_ratio_1h_1d"][2] == "NOT_FOUND"
    assert ratio[2] is None and any(isinstance(r, float) for r in ratio[:2]), ratio
    # a list over both views, short names that do not collide
    features = [f"{names['cust']}:amount_sum_1d", f"{names['merch']}:last_amount"]
    feast_equals_ours(
        url, feast, {"features": features, "entity_rows": rows, "full_feature_names": False}
    )
    # short names of the service collide (n_1h of both views): refused, and Feast says why
    message = feast_error_equals_ours(url, feast, {**service, "full_feature_names": False}, 422)
    assert "feature names collide (n_1h)" in message


def test_a_composite_key_view_reads_the_same_through_feast(world) -> None:  # type: ignore[no-untyped-def]
    url, registry, feast, names = world
    view = registry.feature_views[names["pair"]]
    features = [f"{view.name}:{f.name}" for f in view.features]
    rows = [
        {"customer_id": "c3", "merchant_id": 4},
        {"customer_id": "c4", "merchant_id": 9},
        {"customer_id": "c3", "merchant_id": 999},  # each known, never together
        {"customer_id": "stale", "merchant_id": 10},  # past the ttl
        {"customer_id": "quiet", "merchant_id": 10},
        {"customer_id": None, "merchant_id": 4},  # a null key column: never a match
        {"customer_id": "c3", "merchant_id": None},
    ]
    for full in (False, True):
        answer = feast_equals_ours(
            url, feast, {"features": features, "entity_rows": rows, "full_feature_names": full}
        )
        n = f"{view.name}__n_1d" if full else "n_1d"
        assert answer["metadata"]["feature_names"][:2] == ["customer_id", "merchant_id"]
        assert statuses(answer)[n] == [
            "PRESENT", "PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE", "PRESENT", "NOT_FOUND",
            "NOT_FOUND",
        ]  # fmt: skip
        assert columns(answer)[n][5:] == [0, 0]
    # Feast's `online_read` sends the first join key only (Feast issue 6488): refused with a
    # message naming the other column, never answered for another entity.
    got = feast.ask(
        call="online_read", view=view.name, join_keys=["customer_id", "merchant_id"],
        values=[["c3", 4]], features=["n_1d"],
    )  # fmt: skip
    assert got["error"] == "RuntimeError", got
    assert f"feature view '{view.name}' needs entity key 'merchant_id'" in got["message"]


def test_online_read_equals_a_lookup(world) -> None:  # type: ignore[no-untyped-def]
    url, _, feast, names = world
    features = ["n_1h", "amount_mean_1d", "last_amount"]
    merchants = [1, 2, 3]
    body = {
        "features": [f"{names['merch']}:{f}" for f in features],
        "entities": {"merchant_id": merchants},
    }
    for _ in range(3):
        _, before = ours(url, body)
        got = feast.ask(
            call="online_read", view=names["merch"], join_key="merchant_id",
            values=merchants, features=features,
        )  # fmt: skip
        _, after = ours(url, body)
        if before == after:
            break
    assert before == after, "values kept moving"
    assert got == {"columns": {f: columns(before)[f] for f in features}}


def test_errors_reach_feast_readably(world) -> None:  # type: ignore[no-untyped-def]
    url, _, feast, names = world
    cust, merch = names["cust"], names["merch"]
    rows = [{"customer_id": "c1"}]
    unknown = {"features": [f"{cust}:nope"], "entity_rows": rows, "full_feature_names": False}
    assert "has no 'nope'" in feast_error_equals_ours(url, feast, unknown, 422)
    no_key = {"features": [f"{merch}:n_1h"], "entity_rows": rows, "full_feature_names": False}
    assert "needs entity key 'merchant_id'" in feast_error_equals_ours(url, feast, no_key, 422)
    service = {"feature_service": "no_such_service", "entity_rows": rows}
    got = feast.ask(call="get_online_features", full_feature_names=False, **service)
    assert got["error"] == "FeatureServiceNotFoundException", got  # Feast's registry says so
    ok = {"features": [f"{cust}:n_1h"], "entity_rows": rows, "full_feature_names": False}
    assert "invalid API key" in feast_error_equals_ours(url, feast, ok, 401, api_key="wrong")


def test_feast_fields_are_accepted_and_other_fields_still_refused(world) -> None:  # type: ignore[no-untyped-def]
    url, _, _, names = world
    base = {"features": [f"{names['cust']}:n_1h"], "entities": {"customer_id": ["c1"]}}
    status, answer = ours(url, {**base, "include_feature_view_version_metadata": True})
    assert status == 200 and answer["metadata"] == {"feature_names": ["customer_id", "n_1h"]}
    status, answer = ours(url, {**base, "full_feature_name": True})  # a typo is no Feast field
    assert status == 422 and answer["detail"][0]["loc"] == ["body", "full_feature_name"]
    # Feast's MCP client sends `features: []` beside a feature service
    mcp = {
        "features": [],
        "feature_service": names["service"],
        "entities": {"customer_id": ["c1"], "merchant_id": [1]},
        "full_feature_names": True,
    }
    status, answer = ours(url, mcp)
    assert status == 200 and len(answer["metadata"]["feature_names"]) == 2 + 6, answer
    status, answer = ours(url, {**base, "features": []})
    assert status == 422 and answer["detail"] == "no features requested"
