"""POST /get-online-features over state the real worker wrote in the real Redis."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import redis
from fastapi.testclient import TestClient

from feature_service.aggregation.reference import Event, brute_force, matches
from feature_service.aggregation.state import OutsideRetentionError
from feature_service.api.app import create_app
from feature_service.core.config import Settings
from feature_service.definitions import load_definitions
from feature_service.embedded import EmbeddedRedis, EmbeddedStack
from feature_service.embedded.processes import free_port
from feature_service.online.reader import ViewColumns, read_batched, read_columns
from feature_service.online.redis_client import connect
from tests.conditions import wait_for
from tests.integration.streaming import (
    expected_events,
    make_events,
    offline_events,
    produce,
    start_worker,
    stats,
    write_definitions,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def online_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("online")


@pytest.fixture(scope="module")
def served(stack: EmbeddedStack, online_tmp: Path):  # type: ignore[no-untyped-def]
    tmp = online_tmp
    definitions, registry = write_definitions(tmp)
    events = make_events(3_000, seed=9, customers=40)
    offline = tmp / "offline"
    client = redis.Redis.from_url(stack.redis.url)
    worker = start_worker(stack, definitions, offline)
    try:
        produce(stack, registry, events)
        wait_for(lambda: stats(client, registry).get("events", 0) >= 3_000, 120, "events", worker)
    finally:
        worker.stop()
    view = next(iter(registry.feature_views.values()))
    expected = expected_events(view, offline_events(registry, offline))
    settings = Settings(redis_url=stack.redis.url, broker_url=stack.broker.bootstrap)
    with TestClient(create_app(settings, registry)) as api:
        yield api, view, expected


def ask(api: TestClient, view, entities: list[str], **extra) -> dict:  # type: ignore[no-untyped-def]
    body = {
        "features": [f"{view.name}:{f.name}" for f in view.features],
        "entities": {"customer_id": entities},
        **extra,
    }
    response = api.post("/get-online-features", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_values_equal_brute_force_at_as_of(served) -> None:  # type: ignore[no-untyped-def]
    api, view, expected = served
    entities = sorted(expected)[:10]
    newest = max(e.ts for events in expected.values() for e in events)
    for t in (newest, newest - 5400.5):
        body = ask(api, view, entities, as_of=t)
        assert body["metadata"]["feature_names"] == [
            "customer_id",
            *[f.name for f in view.features],
        ]
        assert body["results"][0]["values"] == entities
        for i, feature in enumerate(view.features):
            column = body["results"][i + 1]
            for row, entity in enumerate(entities):
                want = brute_force(expected[entity], t, feature, i)
                assert matches(feature, column["values"][row], want), (
                    f"{entity} {feature.name} at {t}"
                )
                assert column["statuses"][row] == ("NULL_VALUE" if want is None else "PRESENT")


def test_windows_decay_and_unknown_entities_are_not_found(served) -> None:  # type: ignore[no-untyped-def]
    api, view, expected = served
    entity = sorted(expected)[0]
    last = max(e.ts for e in expected[entity])
    body = ask(api, view, [entity, "nobody"], as_of=last + 2 * 86400 + 1, full_feature_names=True)
    columns = dict(zip(body["metadata"]["feature_names"], body["results"], strict=True))
    assert columns[f"{view.name}__n_1h"]["values"] == [0, 0]  # never seen: no events
    assert columns[f"{view.name}__amount_sum_1d"]["values"][0] is None
    assert columns[f"{view.name}__amount_sum_1d"]["statuses"] == ["NULL_VALUE", "NOT_FOUND"]
    assert columns[f"{view.name}__last_amount"]["statuses"][0] == "PRESENT"


def test_values_older_than_ttl_are_outside_max_age(served) -> None:  # type: ignore[no-untyped-def]
    api, view, expected = served
    entity = sorted(expected)[0]
    last = max(e.ts for e in expected[entity])
    body = ask(api, view, [entity], as_of=last + 31 * 86400)
    assert {c["statuses"][0] for c in body["results"][1:]} == {"OUTSIDE_MAX_AGE"}


def test_event_timestamps_of_a_past_as_of_are_of_events_at_or_before_it(served) -> None:  # type: ignore[no-untyped-def]
    api, view, expected = served
    entity = max(expected, key=lambda e: len(expected[e]))
    times = sorted(e.ts for e in expected[entity])
    newest_all = max(e.ts for events in expected.values() for e in events)
    k = next(i for i, ts in enumerate(times) if newest_all - ts < 6 * 3600)  # in retention
    assert k < len(times) - 1, "the entity needs two events in the last 6 hours"
    middle = times[k]
    for as_of in (middle, middle + 0.5 * (times[k + 1] - middle), times[-1] + 60):
        body = ask(api, view, [entity], as_of=as_of)
        newest = max(ts for ts in times if ts <= as_of)
        stamps = {c["event_timestamps"][0] for c in body["results"][1:]}
        assert len(stamps) == 1, stamps
        got = pd.Timestamp(stamps.pop()).timestamp()
        assert abs(got - newest) < 1e-3, (as_of, got, newest)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {"features": ["nope:x"], "entities": {"customer_id": ["c1"]}},
            422,
            "unknown feature 'nope:x'",
        ),
        ({"features": ["{view}:nope"], "entities": {"customer_id": ["c1"]}}, 422, "has no 'nope'"),
        (
            {"features": ["{view}:n_1h"], "entities": {"merchant_id": ["m1"]}},
            422,
            "needs entity key 'customer_id'",
        ),
        (
            {"features": ["{view}:n_1h"], "entities": {"customer_id": ["c1"]}, "as_of": "soon"},
            422,
            "as_of",
        ),
        (
            {"features": ["{view}:n_1h"], "entities": {"customer_id": ["c1"]}, "as_of": 0},
            422,
            "too far in the past",
        ),
        (
            {"features": ["{view}:n_1h"], "entities": {"customer_id": ["c"] * 1001}},
            413,
            "at most 1000",
        ),
        ({"entities": {"customer_id": ["c1"]}}, 422, "exactly one of"),
        (
            {"features": ["{view}:n_1h", "{view}:n_1h"], "entities": {"customer_id": ["c1"]}},
            422,
            "feature names collide (n_1h); set full_feature_names: true",
        ),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_problem(
    served, body: dict, status: int, message: str
) -> None:  # type: ignore[no-untyped-def]
    api, view, _ = served
    payload = json.loads(json.dumps(body).replace("{view}", view.name))
    response = api.post("/get-online-features", json=payload)
    assert response.status_code == status, response.text
    assert message in response.text


def test_malformed_json_is_a_422(served) -> None:  # type: ignore[no-untyped-def]
    api, _, _ = served
    response = api.post(
        "/get-online-features", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


def test_a_body_sent_in_pieces_gets_the_same_answer(served) -> None:  # type: ignore[no-untyped-def]
    """A body in many ASGI messages gets the answer of the same body in one (whichever
    of the lookup path and the FastAPI route answers it); a body that is not JSON by
    its content type goes on to the FastAPI route, which refuses it."""
    api, view, expected = served
    body = json.dumps(
        {
            "features": [f"{view.name}:{f.name}" for f in view.features],
            "entities": {"customer_id": sorted(expected)[:5]},
            "as_of": 1_793_491_200,
        }
    ).encode()
    json_type = {"content-type": "application/json"}
    whole = api.post("/get-online-features", content=body, headers=json_type)

    def pieces():  # type: ignore[no-untyped-def]
        for i in range(0, len(body), 7):
            yield body[i : i + 7]

    chunked = api.post("/get-online-features", content=pieces(), headers=json_type)
    assert whole.status_code == chunked.status_code == 200, chunked.text
    assert chunked.json() == whole.json()
    text = api.post("/get-online-features", content=body, headers={"content-type": "text/plain"})
    assert 400 <= text.status_code < 500, text.text


def test_lookups_read_together_get_the_answers_each_gets_alone(
    served, stack: EmbeddedStack
) -> None:  # type: ignore[no-untyped-def]
    """Concurrent lookups share one read and one evaluation (`reader.ReadBatcher`): each
    still gets what `read_columns` answers it alone, at its own time and for its own
    features, and one that asks too far back fails alone."""
    _, view, expected = served
    entities = sorted(expected)
    names = [f.name for f in view.features]
    newest = max(e.ts for events in expected.values() for e in events)
    rng = random.Random(5)
    asks = []
    for _ in range(40):
        chosen = rng.sample([*entities, "nobody"], rng.randint(1, 12))
        only = frozenset(rng.sample(names, rng.randint(1, len(names))))
        t = newest + rng.choice([0.0, 30.5, 3600.0, 86_400.0 * 2]) - rng.choice([0.0, 600.0])
        asks.append(([(view, chosen)], t, {view.name: only}))

    def mgets() -> int:
        return int(stats_of.info("commandstats").get("cmdstat_mget", {}).get("calls", 0))

    async def run() -> tuple[list[list[ViewColumns]], list[object], list[list[ViewColumns]]]:
        redis_client = connect(stack.redis.url)
        try:
            together = await asyncio.gather(*(read_batched(redis_client, *a) for a in asks))
            reads = mgets()
            mixed = await asyncio.gather(
                read_batched(redis_client, [(view, entities[:3])], newest - 400 * 86_400.0),
                *(read_batched(redis_client, *a) for a in asks[:3]),
                return_exceptions=True,
            )
            alone = [await read_columns(redis_client, *a) for a in asks]
        finally:
            await redis_client.aclose()
        return together, [reads, *mixed], alone

    stats_of = redis.Redis.from_url(stack.redis.url)
    before = mgets()
    together, (reads, too_old, *rest), alone = asyncio.run(run())
    assert reads - before == 1, "40 lookups, one read"
    assert isinstance(too_old, OutsideRetentionError)
    assert rest == alone[:3], "the others of its batch are answered"
    for got, want in zip(together, alone, strict=True):
        (g,), (w,) = got, want
        assert g.statuses == w.statuses and g.event_ts == w.event_ts
        assert g.values.keys() == w.values.keys()
        for name in w.values:
            for a, b in zip(g.values[name], w.values[name], strict=True):
                floats = isinstance(a, float) and isinstance(b, float)
                assert a == b or (floats and math.isclose(a, b, rel_tol=1e-9)), (name, a, b)


def test_api_answers_503_while_redis_is_down_and_recovers_without_restart(
    tmp_path: Path,
) -> None:
    _, registry = write_definitions(tmp_path)
    view = next(iter(registry.feature_views.values()))
    server = EmbeddedRedis(tmp_path / "redis", tmp_path).start()
    port = server.port
    body = {"features": [f"{view.name}:n_1h"], "entities": {"customer_id": ["c1"]}}
    try:
        with TestClient(create_app(Settings(redis_url=server.url), registry)) as api:
            assert api.post("/get-online-features", json=body).status_code == 200
            server.stop()
            assert api.post("/get-online-features", json=body).status_code == 503
            server = EmbeddedRedis(tmp_path / "redis", tmp_path, port=port).start()
            response = api.post("/get-online-features", json=body)
            assert response.status_code == 200, response.text
            assert response.json()["results"][1]["statuses"] == ["NOT_FOUND"]
    finally:
        server.stop()


def test_redis_down_is_a_503(stack: EmbeddedStack, tmp_path: Path) -> None:
    _, registry = write_definitions(tmp_path)
    view = next(iter(registry.feature_views.values()))
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(create_app(settings, registry)) as api:
        response = api.post(
            "/get-online-features",
            json={"features": [f"{view.name}:n_1h"], "entities": {"customer_id": ["c1"]}},
        )
        assert response.status_code == 503
        assert "online store unavailable" in response.text
        assert api.get("/health").status_code == 503


def test_feature_log_holds_each_events_values_as_the_api_serves_them(
    served, online_tmp: Path
) -> None:  # type: ignore[no-untyped-def]
    """`feature-service feature-log` over the worker's offline log: each event's values
    equal the brute force at its time and the API's answer with as_of = its time."""
    api, view, expected = served
    env = {**os.environ, "FS_OFFLINE_URI": str(online_tmp / "offline")}
    env.pop("FS_REDIS_URL", None)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "feature_service.cli.main",
            "feature-log",
            "--view",
            view.name,
            "--definitions",
            str(online_tmp / "defs"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    path = online_tmp / "offline" / "features" / f"view={view.name}" / "features.parquet"
    log = pd.read_parquet(path)
    assert len(log) == 3_000  # every event of the source, late ones marked
    assert int(log["_late"].sum()) == 3_000 - sum(len(e) for e in expected.values())
    kept = log[~log["_late"]]
    for row in kept.sample(25, random_state=1).to_dict(orient="records"):
        entity, t = row["customer_id"], row["event_timestamp"]
        for i, feature in enumerate(view.features):
            want = brute_force(expected[entity], t, feature, i)
            got = _none_if_nan(row[feature.name])
            assert matches(feature, got, want), f"{entity} {feature.name} at {t}"
    # online state answers as_of within one longest window (1d) behind the watermark
    recent = kept[kept["event_timestamp"] >= kept["event_timestamp"].max() - 86_400 + 3600]
    for row in recent.sample(15, random_state=2).to_dict(orient="records"):
        entity, t = row["customer_id"], row["event_timestamp"]
        served_now = ask(api, view, [entity], as_of=t)
        for i, feature in enumerate(view.features):
            online = served_now["results"][i + 1]["values"][0]
            got = _none_if_nan(row[feature.name])
            assert matches(feature, online, got), f"{entity} {feature.name} at {t}"
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "feature_service.cli.main",
            "feature-log",
            "--view",
            "nope",
            "--definitions",
            str(online_tmp / "defs"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 1 and "unknown feature view 'nope'" in bad.stderr


def _none_if_nan(value: object) -> object:
    return None if isinstance(value, float) and math.isnan(value) else value


def test_computed_columns_and_derived_features_through_a_real_worker(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    """Issue 25 end to end: a computed column aggregated and filtered on by the worker,
    derived and request-time features served by the API, each the expression of the
    brute force's values; a missing request field is a 422 naming it."""
    definitions, registry = write_definitions(tmp_path)
    path = definitions / "defs.yaml"
    text = path.read_text().replace(
        "    schema: {customer_id: string, amount: float, category: string, online: bool}\n",
        "    schema: {customer_id: string, amount: float, category: string, online: bool}\n"
        '    columns: {is_round: "amount % 10 < 5", amount_x2: "amount * 2"}\n',
    ).replace(
        "    ttl: 30d\n",
        "    ttl: 30d\n    request: {amount: float}\n",
    ) + (
        "      - {name: round_share_1d, column: is_round, aggregation: mean, window: 1d}\n"
        '      - {name: big_1d, aggregation: count, window: 1d, where: "amount_x2 > 3 * 20"}\n'
        '      - {name: ratio, expression: "amount_sum_1h / amount_sum_1d"}\n'
        '      - {name: z, expression: "(request.amount - amount_mean_1d) / amount_std_1d"}\n'
    )
    view_name = next(iter(registry.feature_views))
    text += (
        "feature_services:\n  - name: scoring\n    request: {fx: float}\n    features:\n"
        f"      - {view_name}:n_1h\n"
        f'      - {{name: spend_fx, expression: "{view_name}__amount_sum_1d * request.fx"}}\n'
    )
    path.write_text(text)
    registry = load_definitions(definitions)
    view = next(iter(registry.feature_views.values()))
    events = make_events(400, seed=25, customers=5)
    offline = tmp_path / "offline"
    client = redis.Redis.from_url(stack.redis.url)
    worker = start_worker(stack, definitions, offline)
    try:
        produce(stack, registry, events)
        wait_for(lambda: stats(client, registry).get("events", 0) >= 400, 120, "events", worker)
    finally:
        worker.stop()
    expected = expected_events(view, offline_events(registry, offline))
    for entity, events_ in expected.items():  # the oracle computes the columns too
        with_columns = []
        for e in events_:
            values = dict(e.values)
            for name, expr in view.source.computed:
                values[name] = expr.evaluate_row(values)
            passes = tuple(f.where is None or f.where.evaluate_row(values) for f in view.features)
            with_columns.append(Event(e.ts, e.seq, values, passes))
        expected[entity] = with_columns
    entities = sorted(expected)
    t = max(e.ts for events_ in expected.values() for e in events_)
    settings = Settings(redis_url=stack.redis.url, broker_url=stack.broker.bootstrap)
    names = ["round_share_1d", "big_1d", "ratio", "z"]
    with TestClient(create_app(settings, registry)) as api:
        response = api.post(
            "/get-online-features",
            json={
                "features": [f"{view.name}:{n}" for n in names],
                "entities": {"customer_id": entities, "amount": [100.0] * len(entities)},
                "as_of": t,
            },
        )
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        service = api.post(
            "/get-online-features",
            json={
                "feature_service": "scoring",
                "entities": {"customer_id": entities, "fx": [2.0] * len(entities)},
                "as_of": t,
            },
        )
        assert service.status_code == 200, service.text
        spend = service.json()["results"][2]["values"]
        missing = api.post(
            "/get-online-features",
            json={"features": [f"{view.name}:z"], "entities": {"customer_id": entities}},
        )
    assert missing.status_code == 422
    assert "needs request field 'amount'" in missing.json()["detail"]
    for row, entity in enumerate(entities):
        base = {f.name: brute_force(expected[entity], t, f, i) for i, f in enumerate(view.features)}
        assert matches("mean", results[1]["values"][row], base["round_share_1d"])
        assert results[2]["values"][row] == base["big_1d"]
        assert math.isclose(spend[row], base["amount_sum_1d"] * 2.0, rel_tol=1e-9)
        for column, name in ((3, "ratio"), (4, "z")):
            d = view.derived_feature(name)
            assert d is not None
            want = d.expression.evaluate_row({**base, "request.amount": 100.0})
            got = results[column]["values"][row]
            assert (got is None and want is None) or math.isclose(got, want, rel_tol=1e-6), (
                entity, name, got, want,
            )  # fmt: skip
