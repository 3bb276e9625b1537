"""Where training sets and online lookups used to disagree, over what the real worker
wrote: a row at an event's own time (ms and µs times), and an entity never seen."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis
from fastapi.testclient import TestClient

from feature_service import FeatureStore
from feature_service.api.app import create_app
from feature_service.core.config import Settings
from feature_service.definitions import FeatureView
from feature_service.embedded import EmbeddedStack
from tests.conditions import wait_for
from tests.integration.streaming import (
    offline_events,
    produce,
    start_worker,
    stats,
    write_definitions,
)

pytestmark = pytest.mark.integration

START = pd.Timestamp("2026-11-03T06:58:25.765Z")  # once 1793689105.7649999 offline


def _times(n: int) -> list[str]:
    """ISO-8601 times of events, ms and µs, a few seconds apart, as a public data set has."""
    rng = np.random.default_rng(21)
    steps = np.cumsum(rng.integers(1, 5_000_000, n))  # µs
    steps[: n // 2] -= steps[: n // 2] % 1000  # the first half to the millisecond
    stamps = [START + pd.Timedelta(microseconds=int(s)) for s in steps]
    return [START.isoformat().replace("+00:00", "Z")] + [
        s.isoformat(timespec="microseconds").replace("+00:00", "Z") for s in stamps[:-1]
    ]


@pytest.fixture(scope="module")
def served(
    stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, FeatureStore, FeatureView, list[tuple[str, str]]]]:
    tmp = tmp_path_factory.mktemp("agree")
    definitions, registry = write_definitions(tmp)
    offline = tmp / "offline"
    texts = _times(120)
    customers = ["e0", "e1", "e2"]
    points = [(customers[i % 3], t) for i, t in enumerate(texts)]
    events: list[bytes | dict[str, Any]] = [
        {"customer_id": c, "amount": 1.5, "category": "fuel", "online": False, "ts": t}
        for c, t in points
    ]
    client = redis.Redis.from_url(stack.redis.url)
    worker = start_worker(stack, definitions, offline)
    try:
        produce(stack, registry, events)
        wait_for(
            lambda: stats(client, registry).get("events", 0) >= len(events), 120, "events", worker
        )
        wait_for(
            lambda: len(offline_events(registry, offline)) >= len(events), 60, "offline", worker
        )
    finally:
        worker.stop()
    settings = Settings(
        redis_url=stack.redis.url,
        broker_url=stack.broker.bootstrap,
        offline_uri=str(offline),
        definitions=definitions,
    )
    store = FeatureStore(settings, registry)
    view = next(iter(registry.feature_views.values()))
    try:
        with TestClient(create_app(settings, registry)) as api:
            yield api, store, view, points
    finally:
        store.close()


def _online(api: TestClient, view: FeatureView, entities: list[str], as_of: Any) -> dict:
    body = {
        "features": [f"{view.name}:{f.name}" for f in view.features],
        "entities": {"customer_id": entities},
        "as_of": as_of,
    }
    response = api.post("/get-online-features", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    return dict(zip(answer["metadata"]["feature_names"], answer["results"], strict=True))


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and math.isnan(value) else value


def test_a_row_at_an_events_own_time_counts_it_as_online_as_of_does(served) -> None:  # type: ignore[no-untyped-def]
    api, store, view, points = served
    features = [f"{view.name}:n_1h", f"{view.name}:since_last"]
    for stamps in (
        [t for _, t in points],  # the events' own strings
        pd.to_datetime([t for _, t in points], utc=True),  # as datetimes
    ):
        rows = pd.DataFrame({"customer_id": [c for c, _ in points], "event_timestamp": stamps})
        offline = store.get_historical_features(rows, features)
        assert offline["since_last"].tolist() == [0.0] * len(points)  # the row's own event
        seen: dict[str, int] = {}
        for i, (entity, _) in enumerate(points):
            seen[entity] = seen.get(entity, 0) + 1
            assert offline["n_1h"].iloc[i] == seen[entity], (i, points[i])
    # online as_of of the same strings (one lookup per event: they are few)
    for i, (entity, text) in enumerate(points[:40]):
        online = _online(api, view, [entity], text)
        assert online["since_last"]["values"] == [0.0], (i, text)
        assert online["n_1h"]["values"] == [offline["n_1h"].iloc[i]], (i, text)
    # the HTTP route's rows, given as the same strings
    response = api.post(
        "/get-historical-features",
        json={
            "features": features,
            "entities": {
                "customer_id": [c for c, _ in points[:40]],
                "event_timestamp": [t for _, t in points[:40]],
            },
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["columns"]["n_1h"] == offline["n_1h"].tolist()[:40]


def test_an_entity_never_seen_gets_online_what_training_sets_give(served) -> None:  # type: ignore[no-untyped-def]
    api, store, view, points = served
    at = points[-1][1]
    online = _online(api, view, ["nobody", points[0][0]], at)
    rows = pd.DataFrame({"customer_id": ["nobody"], "event_timestamp": [at]})
    offline = store.get_historical_features(rows, [f"{view.name}:{f.name}" for f in view.features])
    by_kind = {f.aggregation: f.name for f in view.features}
    assert online[by_kind["count"]]["values"][0] == 0  # n_1h
    assert online[by_kind["count_distinct"]]["values"][0] == 0
    assert online[by_kind["sum"]]["values"][0] is None
    assert online[by_kind["time_since_last"]]["values"][0] is None
    for f in view.features:
        column = online[f.name]
        assert column["statuses"][0] == "NOT_FOUND", f.name
        assert column["values"][0] == _plain(offline[f.name].iloc[0]), f.name
    # the SDK serves the same
    sdk = store.get_online_features(
        [f"{view.name}:n_1h", f"{view.name}:amount_sum_1h"], [{"customer_id": "nobody"}], as_of=at
    )
    assert sdk.to_dict()["n_1h"] == [0] and sdk.to_dict()["amount_sum_1h"] == [None]
    assert sdk.statuses()["n_1h"] == ["NOT_FOUND"]


def test_an_epoch_of_400_digits_is_a_422_not_a_500(served) -> None:  # type: ignore[no-untyped-def]
    api, _, view, _ = served
    huge = int("9" * 400)
    response = api.post(
        "/get-historical-features",
        json={
            "features": [f"{view.name}:n_1h"],
            "entities": {"customer_id": ["e0"], "event_timestamp": [huge]},
        },
    )
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]  # refused as JSON, before any conversion
    assert error["loc"] == ["body", "entities", "event_timestamp", 0]
    assert "400 digits" in error["msg"]
