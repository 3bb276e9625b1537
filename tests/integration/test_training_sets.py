"""Training sets over what the real worker wrote: equal to the online reads (API and SDK)
at the same times, through the SDK, the HTTP route and the CLI."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis
from fastapi.testclient import TestClient

from feature_service import FeatureStore
from feature_service.api.app import create_app
from feature_service.core.config import Settings
from feature_service.definitions import Feature, FeatureView
from feature_service.embedded import EmbeddedStack
from feature_service.parity import same_value
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

N_EVENTS = 4_000


@pytest.fixture(scope="module")
def trained(
    stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, FeatureStore, FeatureView, Settings, float]]:
    tmp = tmp_path_factory.mktemp("training")
    definitions, registry = write_definitions(tmp)
    offline = tmp / "offline"
    client = redis.Redis.from_url(stack.redis.url)
    worker = start_worker(stack, definitions, offline)
    try:
        produce(stack, registry, make_events(N_EVENTS, seed=21, customers=50))
        wait_for(
            lambda: stats(client, registry).get("events", 0) >= N_EVENTS, 180, "events", worker
        )
    finally:
        worker.stop()
    newest = float(offline_events(registry, offline)["event_ts"].max())
    settings = Settings(
        redis_url=stack.redis.url,
        broker_url=stack.broker.bootstrap,
        offline_uri=str(offline),
        definitions=definitions,
        max_entities_per_request=50,
    )
    store = FeatureStore(settings, registry)
    view = next(iter(registry.feature_views.values()))
    try:
        with TestClient(create_app(settings, registry)) as api:
            yield api, store, view, settings, newest
    finally:
        store.close()


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _same(feature: Feature, a: Any, b: Any) -> bool:
    """Equal as the parity check compares them (its aggregation's `matches`: floating
    sums to 1e-9, lists, maps and sketches exactly)."""
    return same_value(feature, _plain(a), _plain(b))


def test_training_set_equals_online_reads_through_api_and_sdk(trained) -> None:  # type: ignore[no-untyped-def]
    api, store, view, _, newest = trained
    features = [f"{view.name}:{f.name}" for f in view.features]
    entities = [f"c{i}" for i in range(0, 50, 4)] + ["nobody"]
    times = [newest, newest - 1800.5, newest - 3 * 3600 - 7.25]
    rows = pd.DataFrame(
        {
            "customer_id": [e for t in times for e in entities],
            "event_timestamp": [t for t in times for _ in entities],
            "label": range(len(times) * len(entities)),
        }
    )
    offline = store.get_historical_features(rows, features)
    assert offline["label"].tolist() == rows["label"].tolist()
    assert offline["customer_id"].tolist() == rows["customer_id"].tolist()
    compared = 0
    for t in times:
        body = {"features": features, "entities": {"customer_id": entities}, "as_of": t}
        response = api.post("/get-online-features", json=body)
        assert response.status_code == 200, response.text
        http = {
            name: column["values"]
            for name, column in zip(
                response.json()["metadata"]["feature_names"], response.json()["results"],
                strict=True,
            )
        }  # fmt: skip
        sdk = store.get_online_features(
            features, [{"customer_id": e} for e in entities], as_of=t
        ).to_dict()
        part = offline[offline["event_timestamp"] == t]
        for f in view.features:
            for i, entity in enumerate(entities):
                want = part[f.name].iloc[i]
                assert _same(f, http[f.name][i], want), (f.name, entity, t)
                assert _same(f, sdk[f.name][i], want), (f.name, entity, t)
                compared += 1
    assert compared > 500


def test_http_route_returns_the_sdk_values_in_request_order(trained) -> None:  # type: ignore[no-untyped-def]
    api, store, view, _, newest = trained
    features = [f"{view.name}:n_1h", f"{view.name}:amount_sum_1d", f"{view.name}:last_amount"]
    entities = ["c3", "c1", "nobody", "c3"]
    stamps: list[Any] = [newest, newest - 600, newest, "2026-01-01T00:00:00Z"]
    response = api.post(
        "/get-historical-features",
        json={
            "features": features,
            "entities": {"customer_id": entities, "event_timestamp": stamps},
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["metadata"]["feature_names"] == [
        "customer_id", "event_timestamp", "n_1h", "amount_sum_1d", "last_amount",
    ]  # fmt: skip
    columns = body["columns"]
    assert columns["customer_id"] == entities
    jan = pd.Timestamp("2026-01-01", tz="UTC").timestamp()
    assert columns["event_timestamp"] == stamps  # as given: the ISO string stays a string
    frame = pd.DataFrame({"customer_id": entities, "event_timestamp": [*stamps[:3], jan]})
    sdk = store.get_historical_features(frame, features)
    for name in ("n_1h", "amount_sum_1d", "last_amount"):
        assert columns[name] == [_plain(v) for v in sdk[name]], name
    assert columns["n_1h"][2] == 0 and columns["amount_sum_1d"][2] is None  # unknown
    assert columns["n_1h"][3] == 0  # before any event


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"features": ["nope:x"]}, 422, "unknown feature 'nope:x'"),
        ({"entities": {"customer_id": ["c1"]}}, 422, '"event_timestamp"'),
        ({"entities": {"customer_id": ["c1"], "event_timestamp": ["soon"]}}, 422,
         "event_timestamp[0]"),
        ({"entities": {"customer_id": ["c1"] * 51, "event_timestamp": [1.0] * 51}}, 413,
         "at most 50"),
        ({"entities": {"event_timestamp": [1.0]}}, 422, "needs entity key 'customer_id'"),
    ],
)  # fmt: skip
def test_http_route_refuses_bad_requests_with_a_message(trained, body, status, message) -> None:  # type: ignore[no-untyped-def]
    api, _, view, _, _ = trained
    request = {
        "features": [f"{view.name}:n_1h"],
        "entities": {"customer_id": ["c1"], "event_timestamp": [1.0]},
        **body,
    }
    response = api.post("/get-historical-features", json=request)
    assert response.status_code == status, response.text
    assert message in response.text


def test_training_set_command_writes_every_row(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, store, view, settings, newest = trained
    rows = pd.DataFrame(
        {
            "customer_id": ["c2", "c9", "ghost"],
            "event_timestamp": pd.to_datetime([newest, newest - 86400, newest], unit="s"),
            "is_fraud": [True, False, True],
        }
    )
    rows.to_parquet(tmp_path / "rows.parquet")
    env = {
        **os.environ,
        "FS_OFFLINE_URI": settings.offline_uri,
        "FS_DEFINITIONS": str(settings.definitions),
    }
    features = f"{view.name}:n_1h,{view.name}:amount_mean_1d"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "feature_service.cli.main", "training-set", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)

    out = tmp_path / "train.parquet"
    done = cli("--entities", str(tmp_path / "rows.parquet"), "--features", features, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "wrote 3 rows x 2 features" in done.stdout
    written = pd.read_parquet(out)
    assert written["is_fraud"].tolist() == [True, False, True]
    expected = store.get_historical_features(rows, features.split(","))
    assert written["n_1h"].tolist() == expected["n_1h"].tolist()
    assert written["n_1h"].iloc[2] == 0

    bad = cli("--entities", str(tmp_path / "rows.parquet"), "--features", "x:y", "-o", str(out))
    assert bad.returncode == 1
    assert "unknown feature 'x:y'" in bad.stderr and "Traceback" not in bad.stderr
