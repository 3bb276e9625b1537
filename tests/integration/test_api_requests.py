"""What the API takes and what it refuses, against the real API process.

Inputs that used to take it to a 500 are each a 4xx naming the problem (or a 503 naming
the broken dependency), and the process keeps answering; a refusal never echoes the
body; the training-set route answers the entity rows as they were given.

One `feature-service serve` process beside the session's broker and Redis, its own
offline store, requests sent as raw bytes where JSON escapes matter (a lone surrogate
`"\\ud800"` is valid JSON text but no valid Unicode).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_service.definitions import FeatureView, Registry, Source
from feature_service.embedded import EmbeddedStack
from feature_service.stream.topics import ensure_topics
from tests.conditions import wait_for
from tests.integration.running_up import live
from tests.integration.streaming import start_api, write_definitions

pytestmark = pytest.mark.integration


@dataclass
class Served:
    url: str
    registry: Registry
    view: FeatureView
    source: Source
    offline: Path

    def post(self, path: str, body: bytes | dict, **headers: str) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"content-type": "application/json", **headers}
        return httpx.post(f"{self.url}{path}", content=content, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def served(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp: Path = tmp_path_factory.mktemp("api-refusals")
    definitions, registry = write_definitions(tmp, partitions=1)
    asyncio.run(ensure_topics(stack.broker.bootstrap, registry))
    offline = tmp / "offline"
    api, url = start_api(stack, definitions, tmp, "api-refusals", FS_OFFLINE_URI=str(offline))
    try:
        wait_for(lambda: live(url), 60, "API serving", api)
        view = next(iter(registry.feature_views.values()))
        yield Served(url, registry, view, registry.sources[view.source.name], offline)
        assert live(url), "the API stopped answering"
    finally:
        api.stop(timeout=5)


def _row(source: Source, **values: object) -> dict[str, list[object]]:
    row: dict[str, object] = {
        "customer_id": "c1",
        "amount": 1.5,
        "category": "fuel",
        "online": False,
        source.timestamp_field: 1_790_000_000.0,
    }
    row.update(values)
    return {k: [v] for k, v in row.items()}


def _push(served: Served, df: dict[str, list[object]]) -> bytes:
    return json.dumps({"push_source_name": served.source.name, "df": df}).encode()


def _lookup(served: Served, ids: str) -> bytes:
    features = json.dumps([f"{served.view.name}:n_1h", f"{served.view.name}:amount_sum_1h"])
    return b'{"features": %s, "entities": {"customer_id": %s}}' % (
        features.encode(),
        ids.encode(),
    )


def _historical(served: Served, ids: str, times: str) -> bytes:
    features = json.dumps([f"{served.view.name}:n_1h"])
    return b'{"features": %s, "entities": {"customer_id": %s, "event_timestamp": %s}}' % (
        features.encode(),
        ids.encode(),
        times.encode(),
    )


def _nested(depth: int) -> str:
    return "[" * depth + '"x"' + "]" * depth


def test_a_valid_push_is_accepted(served: Served) -> None:
    response = served.post("/push", _push(served, _row(served.source)))
    assert response.status_code == 200, response.text
    assert response.json() == {"pushed": 1}


@pytest.mark.parametrize(
    ("column", "raw", "named"),
    [
        ("category", _nested(300), "category"),
        ("category", str(2**64), "category"),
        ("category", '"\\ud800"', "category"),
    ],
    ids=["nested-300-deep", "integer-2**64", "lone-surrogate"],
)
def test_a_push_value_json_cannot_carry_is_a_422_naming_the_field(
    served: Served, column: str, raw: str, named: str
) -> None:
    body = _push(served, _row(served.source, **{column: "__raw__"}))
    body = body.replace(b'"__raw__"', raw.encode())
    response = served.post("/push", body)
    assert response.status_code == 422, response.text
    assert named in response.text, response.text


def test_a_push_with_columns_the_source_does_not_have_is_a_422_naming_them(
    served: Served,
) -> None:
    body = _push(served, _row(served.source, colour="red", huge="__raw__"))
    response = served.post("/push", body.replace(b'"__raw__"', str(2**64).encode()))
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "'colour'" in detail and "'huge'" in detail and served.source.name in detail, detail


@pytest.mark.parametrize(
    "ids", [f"[{2**64}]", f"[{2**63}]", f"[{-(2**63) - 1}]", '["\\ud800"]', '["c\xff"]'],
    ids=["2**64", "2**63", "below-int64", "lone-surrogate", "raw-xff-byte"],
)  # fmt: skip
def test_a_lookup_of_an_id_that_is_no_int64_or_no_unicode_is_a_4xx(
    served: Served, ids: str
) -> None:
    body = _lookup(served, "__ids__").replace(b"__ids__", ids.encode("latin-1"))
    response = served.post("/get-online-features", body)
    assert response.status_code in (400, 422), response.text
    assert "customer_id" in response.text or response.status_code == 400, response.text


def test_a_lookup_of_the_largest_int64_id_is_answered(served: Served) -> None:
    response = served.post("/get-online-features", _lookup(served, f"[{2**63 - 1}, 7.0]"))
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["values"] == [2**63 - 1, 7]


def test_an_integer_id_beyond_int64_is_refused_saying_to_send_it_as_text(
    served: Served,
) -> None:
    response = served.post("/get-online-features", _lookup(served, f"[{2**63}]"))
    assert response.status_code == 422, response.text
    assert "customer_id" in response.text and "as a string" in response.text


def test_a_historical_lone_surrogate_id_is_a_422(served: Served) -> None:
    response = served.post(
        "/get-historical-features", _historical(served, '["\\ud800"]', "[1790000000.0]")
    )
    assert response.status_code == 422, response.text
    assert "customer_id" in response.text


def test_a_historical_event_timestamp_of_400_digits_is_a_422(served: Served) -> None:
    response = served.post(
        "/get-historical-features", _historical(served, '["c1"]', "[" + "9" * 400 + "]")
    )
    assert response.status_code == 422, response.text
    assert "event_timestamp" in response.text and "400 digits" in response.text


def test_a_truncated_parquet_file_in_the_offline_store_is_a_503_naming_it(
    served: Served,
) -> None:
    day = served.offline / "events" / f"source={served.source.name}" / "date=2026-09-21"
    day.mkdir(parents=True, exist_ok=True)
    whole = day / "whole.parquet"
    pq.write_table(pa.table({"customer_id": ["c1"] * 100, "amount": [1.0] * 100}), whole)
    broken = day / "p0-o0-e100.parquet"
    broken.write_bytes(whole.read_bytes()[:-40])
    whole.unlink()
    try:
        response = served.post(
            "/get-historical-features", _historical(served, '["c1"]', "[1790000000.0]")
        )
    finally:
        broken.unlink()
    assert response.status_code == 503, response.text
    assert "p0-o0-e100.parquet" in response.json()["detail"], response.text


@pytest.mark.parametrize("path", ["/get-online-features", "/push", "/get-historical-features"])
@pytest.mark.parametrize("content_type", ["application/jsonfoo", "text/plain", "application/x"])
def test_a_body_that_is_not_json_is_a_415_and_never_echoed(
    served: Served, path: str, content_type: str
) -> None:
    marker = b"ECHO-ME-" * 25_000  # 200 kB: the answer must not carry it back
    body = _lookup(served, '["c1"]')[:-1] + b', "x": "' + marker + b'"}'
    response = served.post(path, body, **{"content-type": content_type})
    assert response.status_code == 415, response.text[:500]
    assert len(response.content) < 1000, response.content[:500]
    assert "application/json" in response.json()["detail"]


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON ;charset=UTF-8"])  # fmt: skip
def test_json_with_parameters_is_a_lookup(served: Served, content_type: str) -> None:
    response = served.post(
        "/get-online-features", _lookup(served, '["c1"]'), **{"content-type": content_type}
    )
    assert response.status_code == 200, response.text


def test_a_refused_body_is_echoed_as_a_short_excerpt_at_most(served: Served) -> None:
    big = "y" * 200_000
    for path, body in [
        ("/get-online-features", {"features": [big], "entities": {"customer_id": [big]}}),
        ("/get-online-features", {"features": ["a:b"], "entities": {"customer_id": [[big]]}}),
        ("/push", {"push_source_name": big, "df": {"x": [big]}}),
        ("/push", {"push_source_name": "s", "df": big}),
        ("/get-historical-features", {"features": [big], "entities": {"customer_id": {"a": big}}}),
    ]:
        response = served.post(path, body)
        assert 400 <= response.status_code < 500, response.text[:500]
        assert len(response.content) < 2000, (path, response.content[:500])


def test_historical_features_answer_the_entity_rows_as_given(served: Served) -> None:
    """Item 21: an ISO-8601 `event_timestamp` comes back as that string, not as epoch
    seconds; numbers stay the numbers sent, other columns too."""
    times = [1_793_707_200, "2026-11-03T12:00:00Z", 1_793_707_200.5, "2026-11-03 12:00:00"]
    body = {
        "features": [f"{served.view.name}:n_1h"],
        "entities": {
            "customer_id": ["c1", "c2", 3, "c4"],
            "event_timestamp": times,
            "label": [1, None, 0.5, "x"],
        },
    }
    response = served.post("/get-historical-features", body)
    assert response.status_code == 200, response.text
    columns = response.json()["columns"]
    assert columns["event_timestamp"] == times
    assert [type(t) for t in columns["event_timestamp"]] == [int, str, float, str]
    assert columns["customer_id"] == ["c1", "c2", 3, "c4"]
    assert columns["label"] == [1, None, 0.5, "x"]
    assert columns["n_1h"] == [0, 0, 0, 0]
