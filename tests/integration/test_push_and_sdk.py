"""POST /push and the SDK over the real stack: push, let the real worker ingest, read back
through HTTP and the SDK; API keys; push errors."""

from __future__ import annotations

import asyncio
import json
import math
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
from feature_service.definitions import FeatureView, Registry
from feature_service.embedded import EmbeddedStack
from feature_service.embedded.processes import free_port
from feature_service.requests import RequestError, StoreUnavailable
from feature_service.stream.topics import ensure_topics
from tests.conditions import wait_for
from tests.integration.streaming import start_worker, stats, write_definitions

pytestmark = pytest.mark.integration

T0 = 1_790_000_000.0
KEY = "s3cret-key"


def _rows(customer: str, amounts: list[float], start: float) -> dict[str, list[Any]]:
    n = len(amounts)
    return {
        "customer_id": [customer] * n,
        "amount": amounts,
        "category": ["grocery", "fuel"] * (n // 2) + ["grocery"] * (n % 2),
        "online": [False] * n,
        "ts": [start + 60.0 * i for i in range(n)],
    }


@pytest.fixture(scope="module")
def pushed(
    stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, FeatureStore, FeatureView, Registry]]:
    """A worker, the API (with API keys) and an SDK store on one stack and definitions."""
    tmp = tmp_path_factory.mktemp("push")
    definitions, registry = write_definitions(tmp)
    asyncio.run(ensure_topics(stack.broker.bootstrap, registry))
    worker = start_worker(stack, definitions, tmp / "offline")
    settings = Settings(
        redis_url=stack.redis.url,
        broker_url=stack.broker.bootstrap,
        api_keys=[KEY, "other"],
        offline_uri=str(tmp / "offline"),  # the worker's: training sets read what it wrote
    )
    store = FeatureStore(settings, registry)
    view = next(iter(registry.feature_views.values()))
    try:
        with TestClient(create_app(settings, registry)) as api:
            yield api, store, view, registry
    finally:
        store.close()
        worker.stop()


def _events(stack: EmbeddedStack, registry: Registry) -> int:
    return stats(redis.Redis.from_url(stack.redis.url), registry).get("events", 0)


def test_pushed_events_are_served_identically_by_http_and_sdk(pushed, stack) -> None:  # type: ignore[no-untyped-def]
    api, store, view, registry = pushed
    before = _events(stack, registry)
    body = {"push_source_name": view.source.name, "df": _rows("alice", [10.0, 20.0, 30.5], T0)}
    response = api.post("/push", json=body, headers={"X-API-Key": KEY})
    assert response.status_code == 200, response.text
    assert response.json() == {"pushed": 3}
    frame = pd.DataFrame(_rows("bob", [5.0, 7.0], T0))
    frame["ts"] = pd.to_datetime(frame["ts"], unit="s")  # the SDK takes datetimes too
    assert store.push(view.source.name, frame) == 2
    wait_for(lambda: _events(stack, registry) >= before + 5, 60, "pushed events ingested")

    features = [f"{view.name}:n_1h", f"{view.name}:amount_sum_1h", f"{view.name}:last_amount"]
    as_of = T0 + 180
    http = api.post(
        "/get-online-features",
        json={
            "features": features,
            "entities": {"customer_id": ["alice", "bob", "carol"]},
            "as_of": as_of,
        },
        headers={"Authorization": f"Bearer {KEY}"},
    ).json()
    sdk = store.get_online_features(
        features,
        [{"customer_id": "alice"}, {"customer_id": "bob"}, {"customer_id": "carol"}],
        as_of=as_of,
    )
    assert sdk.to_dict() == {
        "customer_id": ["alice", "bob", "carol"],
        "n_1h": [3, 2, 0],  # never seen: the count of no events, as in training sets
        "amount_sum_1h": [60.5, 12.0, None],
        "last_amount": [30.5, 7.0, None],
    }
    http_values = {
        name: column["values"]
        for name, column in zip(http["metadata"]["feature_names"], http["results"], strict=True)
    }
    assert http_values == sdk.to_dict()
    statuses = [c["statuses"] for c in http["results"]][1:]
    assert statuses == [s for name, s in sdk.statuses().items() if name != "customer_id"]
    assert statuses[0] == ["PRESENT", "PRESENT", "NOT_FOUND"]
    # two hours later the 1h window is empty, the lifetime value stays
    later = store.get_online_features(features, {"customer_id": ["alice"]}, as_of=T0 + 7200 + 121)
    assert later.to_dict()["n_1h"] == [0]
    assert later.to_dict()["last_amount"] == [30.5]


def _cell(value: Any) -> Any:
    """A training-set cell as the JSON value a lookup gives (missing -> None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def test_a_sum_that_overflows_is_null_online_and_in_training_sets(pushed, stack) -> None:  # type: ignore[no-untyped-def]
    api, store, view, registry = pushed
    before = _events(stack, registry)
    # three in one hour: the worker folds them as a group too (an fsum that overflowed)
    body = {"push_source_name": view.source.name, "df": _rows("huge", [1.7e308] * 3, T0)}
    assert api.post("/push", json=body, headers={"X-API-Key": KEY}).status_code == 200
    wait_for(lambda: _events(stack, registry) >= before + 3, 60, "pushed events ingested")

    features = [f"{view.name}:{f.name}" for f in view.features]
    names = [f.name for f in view.features]
    times = [T0 + 30, T0 + 150]  # the first event only; all three (their sum overflows)
    online = []
    for t in times:
        response = api.post(
            "/get-online-features",
            json={"features": features, "entities": {"customer_id": ["huge"]}, "as_of": t},
            headers={"X-API-Key": KEY},
        )
        assert response.status_code == 200, response.text  # was a 500 (an OverflowError)
        results = response.json()["results"][1:]
        cells = zip(names, results, strict=True)
        online.append({n: (r["values"][0], r["statuses"][0]) for n, r in cells})
    first, both = online
    assert first["amount_sum_1h"] == (1.7e308, "PRESENT")
    assert both["amount_sum_1h"] == (None, "NULL_VALUE")  # the documented overflow value
    assert both["amount_sum_1d"] == (None, "NULL_VALUE")
    assert both["amount_mean_1h"] == (1.7e308, "PRESENT")
    assert both["amount_var_1h"] == (0.0, "PRESENT")
    assert both["n_1h"] == (3, "PRESENT")

    entity_df = pd.DataFrame({"customer_id": ["huge", "huge"], "event_timestamp": times})
    training = store.get_historical_features(entity_df, features)
    for row, served in enumerate(online):  # the training set has what was served
        offline = {n: _cell(training[n].iloc[row]) for n in names}
        expected = {n: value for n, (value, _) in served.items()}
        assert offline.keys() == expected.keys()
        for name, value in expected.items():  # floats to DESIGN.md's relative 1e-9
            if isinstance(value, float) and isinstance(offline[name], float):
                assert math.isclose(offline[name], value, rel_tol=1e-9), (row, name)
            else:
                assert offline[name] == value, (row, name, offline[name])


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-API-Key": "wrong"}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"X-API-Key": "other"}, 200),
    ],
)
def test_api_keys_guard_data_endpoints(pushed, headers: dict, status: int) -> None:  # type: ignore[no-untyped-def]
    api, _, view, _ = pushed
    body = {"features": [f"{view.name}:n_1h"], "entities": {"customer_id": ["x"]}}
    assert api.post("/get-online-features", json=body, headers=headers).status_code == status
    assert api.get("/feature-views", headers=headers).status_code == status
    assert api.get("/health").status_code == 200  # probes need no key


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"push_source_name": "nope"}, 422, "unknown push source 'nope'"),
        (
            {"df": {**_rows("dave", [1.0, 2.0], T0), "amount": [1.0, "N/A"]}},
            422,
            "row 1: field 'amount' must be a float, got 'N/A'",
        ),
        ({"df": {**_rows("dave", [1.0], T0), "ts": ["yesterday"]}}, 422, "row 0: "),
        ({"df": {"customer_id": ["x"], "amount": [1.0, 2.0]}}, 422, "same number of values"),
        ({"df": _rows("dave", [1.0] * 1001, T0)}, 413, "at most 1000"),
        # NaN / Infinity are no JSON (RFC 8259): refused where they stand in the body
        (
            {"df": _rows("dave", [1.0, math.nan], T0)},
            422,
            '"loc":["body","df","amount",1],"msg":"NaN is not a JSON number"',
        ),
        (
            {"df": _rows("dave", [math.inf], T0)},
            422,
            '"loc":["body","df","amount",0],"msg":"Infinity is not a JSON number"',
        ),
        (  # was a 503: the producer's 1 MiB request limit
            {"df": {**_rows("dave", [1.0, 2.0], T0), "category": ["ok", "x" * 2_000_000]}},
            413,
            "row 1: the event is 2000",
        ),
        ({"to": "elsewhere"}, 422, "to"),
    ],
)
def test_bad_pushes_are_refused_whole_naming_the_problem(
    pushed, change: dict, status: int, message: str
) -> None:  # type: ignore[no-untyped-def]
    api, _, view, _ = pushed
    body = {"push_source_name": view.source.name, "df": _rows("dave", [1.0], T0), **change}
    # json.dumps writes NaN and Infinity as JavaScript does, and the API's parser reads them
    headers = {"X-API-Key": KEY, "content-type": "application/json"}
    response = api.post("/push", content=json.dumps(body), headers=headers)
    assert response.status_code == status, response.text[:300]
    assert message in response.text
    if "bytes" in message:
        assert "field 'category' is 2000002 bytes" in response.text


def test_sdk_raises_request_errors(pushed) -> None:  # type: ignore[no-untyped-def]
    _, store, view, _ = pushed
    with pytest.raises(RequestError, match="has no 'nope'"):
        store.get_online_features([f"{view.name}:nope"], [{"customer_id": "x"}])
    with pytest.raises(RequestError, match="needs entity key 'customer_id'"):
        store.get_online_features([f"{view.name}:n_1h"], [{"merchant_id": "x"}])
    with pytest.raises(RequestError, match=r"row 0: field 'amount'"):
        store.push(view.source.name, {**_rows("x", [1.0], T0), "amount": ["lots"]})


def test_push_answers_503_when_the_broker_is_down(tmp_path: Path, stack: EmbeddedStack) -> None:
    _, registry = write_definitions(tmp_path)
    source = next(iter(registry.sources.values()))
    settings = Settings(redis_url=stack.redis.url, broker_url=f"127.0.0.1:{free_port()}")
    with TestClient(create_app(settings, registry)) as api:
        response = api.post(
            "/push", json={"push_source_name": source.name, "df": _rows("e", [1.0], T0)}
        )
        assert response.status_code == 503, response.text
        assert "broker unavailable" in response.text
    with FeatureStore(settings, registry) as store, pytest.raises(StoreUnavailable):
        store.push(source.name, _rows("e", [1.0], T0))
