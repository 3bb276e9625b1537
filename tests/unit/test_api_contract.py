"""/openapi.json says what the body routes take (`api.request_fields`), and their JSON
rules (`api.json_body`) hold in-process: what schemathesis relies on, pinned cheaply.

(tests/integration/test_api_schema.py runs schemathesis against the real process.)
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from feature_service.api.json_body import (
    MAX_ERRORS,
    is_json_media_type,
    not_json,
    short_errors,
)
from feature_service.api.routes import historical, online, push

BODY_ROUTES = ["/get-online-features", "/push", "/get-historical-features"]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    app = FastAPI()
    for router in (online.router, push.router, historical.router):
        app.include_router(router)
    return app.openapi()


def _props(schema: dict[str, Any], model: str) -> dict[str, Any]:
    props: dict[str, Any] = schema["components"]["schemas"][model]["properties"]
    return props


def test_as_of_is_a_non_empty_string_or_epoch_seconds_in_1900_to_2199(schema: dict) -> None:
    kinds = _props(schema, "OnlineFeaturesRequest")["as_of"]["anyOf"]
    assert {"type": "string", "minLength": 1, "description": "ISO-8601"} in kinds
    number = next(k for k in kinds if k["type"] == "number")
    assert number["minimum"] == -2_208_988_800 and number["exclusiveMaximum"] == 7_258_118_400
    assert {"type": "null"} in kinds


def test_names_and_ids_are_stated(schema: dict) -> None:
    online_props = _props(schema, "OnlineFeaturesRequest")
    ref = online_props["features"]["anyOf"][0]["items"]
    assert ref["pattern"] == "^[A-Za-z_][A-Za-z0-9_]*:[A-Za-z_][A-Za-z0-9_]*$"
    entities = online_props["entities"]
    assert entities["propertyNames"]["pattern"] == "^[A-Za-z_][A-Za-z0-9_]*$"
    (ids,) = entities["patternProperties"].values()
    # ids, then the values of request fields (issue 25: Feast's request data in `entities`)
    assert ids["items"]["anyOf"][:2] == [{"type": "string"}, {"type": "integer", "format": "int64"}]
    assert {"type": "number"} in ids["items"]["anyOf"]
    push_props = _props(schema, "PushRequest")
    assert push_props["push_source_name"]["pattern"] == "^[A-Za-z_][A-Za-z0-9_]*$"
    assert push_props["df"]["propertyNames"]["pattern"] == "^[A-Za-z_][A-Za-z0-9_]*$"
    rows = schema["components"]["schemas"]["EntityRows"]
    assert rows["required"] == ["event_timestamp"]


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_every_body_route_documents_415_and_422(schema: dict, path: str) -> None:
    responses = schema["paths"][path]["post"]["responses"]
    assert {"415", "422"} <= set(responses)


@pytest.mark.parametrize(
    ("value", "json"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON ;charset=UTF-8", True),
        ("application/vnd.api+json", True),
        (b"application/json", True),
        ("application/jsonfoo", False),
        ("application/json-seq", False),
        ("text/plain", False),
        ("text/json", False),
        ("json", False),
        ("", False),
        (None, False),
    ],
)
def test_json_media_types(value: str | bytes | None, json: bool) -> None:
    assert is_json_media_type(value) is json


@pytest.mark.parametrize(
    ("body", "loc", "says"),
    [
        (b'{"a": {"b": [1, "\\ud800"]}}', ["body", "a", "b", 1], "not valid Unicode"),
        (b'{"a": ["ok", "c\xff"]}', ["body", "a", 1], "not valid Unicode"),
        (b'{"\\udc00": 1}', ["body"], "a name that is not valid Unicode"),
        (b'{"x": [NaN]}', ["body", "x", 0], "NaN is not a JSON number"),
        (b'{"x": -Infinity}', ["body", "x"], "-Infinity is not a JSON number"),
        (b'{"t": [' + b"9" * 400 + b"]}", ["body", "t", 0], "400 digits"),
    ],
)
def test_a_body_that_is_not_strict_json_is_named_where_it_is_wrong(
    body: bytes, loc: list, says: str
) -> None:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        error = not_json(body, exc)
    else:
        raise AssertionError("orjson took it")
    assert error["loc"] == loc and says in error["msg"], error
    assert len(orjson.dumps(error)) < 300


def test_plain_broken_json_gets_the_readers_position() -> None:
    body = b'{"a": [1, 2'
    with pytest.raises(orjson.JSONDecodeError) as caught:
        orjson.loads(body)
    error = not_json(body, caught.value)
    assert error["type"] == "json_invalid" and error["loc"][0] == "body"
    assert isinstance(error["loc"][1], int) and error["ctx"]["error"]


def test_validation_errors_carry_only_an_excerpt_of_the_input() -> None:
    big = "y" * 100_000
    errors = [
        {"type": "string_type", "loc": ("body", big, i), "msg": "bad", "input": {"k": big}}
        for i in range(50)
    ]
    short = short_errors(errors)
    assert len(short) == MAX_ERRORS + 1 and "40 more" in short[-1]["msg"]
    assert len(orjson.dumps(short)) < 3000
    assert short[0]["input"].startswith('{"k":"yyy') and "characters" in short[0]["input"]
    assert short_errors([{"type": "t", "loc": ("body",), "msg": "m", "input": [1, 2]}])[0][
        "input"
    ] == [1, 2]  # short inputs stay as they are


def test_a_route_refuses_another_media_type_before_reading_the_body() -> None:
    app = FastAPI()
    app.include_router(push.router)
    with TestClient(app) as client:
        answer = client.post("/push", content=b"x" * 1000, headers={"content-type": "text/csv"})
    assert answer.status_code == 415
    assert answer.json() == {"detail": "the body must be JSON: send Content-Type: application/json"}
