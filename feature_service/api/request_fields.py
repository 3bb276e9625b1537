"""The fields of the API's request models, with every rule a JSON schema can state,
so that /openapi.json is the contract the routes keep (schemathesis holds them to it:
tests/integration/test_api_schema.py).

What a schema cannot state stays a 422 from the route, with a message naming it:
names that depend on the deployed definitions (unknown feature, view, service, source,
entity key, source column), columns of unequal length, a row that does not match its
source's schema, an ISO-8601 string that is no time in years 1900..2199, and the
limits an operator sets (`FS_MAX_ENTITIES_PER_REQUEST`: 413).

>>> from pydantic import TypeAdapter
>>> TypeAdapter(AsOf).validate_python(1_793_491_200)
1793491200
>>> TypeAdapter(EntityId).validate_python(2**63)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 2 validation errors for ...
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PlainValidator, WithJsonSchema

from feature_service.aggregation.windows import EARLIEST_TIME, LATEST_TIME
from feature_service.definitions.model import Identifier
from feature_service.requests import check_query_time

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""Names of views, features, entities, join keys, sources and columns (`definitions`)."""
FEATURE_REF_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*:[A-Za-z_][A-Za-z0-9_]*$"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

Name = Identifier
FeatureRefText = Annotated[
    str,
    Field(
        pattern=FEATURE_REF_PATTERN,
        max_length=257,
        description="`view:feature`",
        examples=["customer_txn:amount_sum_1d"],
    ),
]


def _integral_float_as_int(value: Any) -> Any:
    """`5.0` as `5`: JSON (and a JSON schema's `integer`) does not tell them apart. Not
    beyond 2**53, where a float is no longer every integer: there it may be a longer
    integer rounded by the JSON reader (orjson reads one outside int64/uint64 as a
    float), so it is refused, never taken for another id."""
    if isinstance(value, float) and value.is_integer():
        if abs(value) > 2**53:
            raise ValueError(
                f"{value!r} is beyond the integers a JSON number holds exactly: send the id "
                "as a string (ids are matched as text)"
            )
        return int(value)
    return value


def _int64(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(
            f"an integer id must lie in the int64 range: send {_digits(value)} as a string, "
            "the same id (ids are matched as text)"
        )
    return value


def _digits(value: int) -> str:
    text = str(value)
    return text if len(text) <= 30 else f"{text[:20]}... ({len(text)} digits)"


Int64 = Annotated[
    int,
    BeforeValidator(_integral_float_as_int),
    AfterValidator(_int64),
    WithJsonSchema({"type": "integer", "format": "int64"}, mode="validation"),
]
"""An integer in the int64 range, stated by OpenAPI's `format: int64` (bounds written
as numbers would be floats in /openapi.json, and 2**63 - 1 is no float)."""
EntityId = Annotated[
    str | Int64,
    Field(
        description="An entity id: a string, or an integer in the int64 range; ids are "
        'matched as text, so 12 and "12" are the same id.'
    ),
]


def _entity_value(value: Any) -> Any:
    """A value of an `entities` column: a join-key id or a request field's value (Feast's
    request data shape). An integral float is taken as an integer (JSON does not tell 5.0
    from 5) where a float holds every integer (2**53); join keys are checked further
    against the definitions (`requests.entity_rows`)."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return _int64(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) <= 2**53 else value
    raise ValueError("an entity column holds strings, numbers, booleans or nulls")


EntityValue = Annotated[
    str | int | float | bool | None,
    PlainValidator(_entity_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "integer", "format": "int64"},
                {"type": "number"},
                {"type": "boolean"},
                {"type": "null"},
            ],
            "description": "A join-key id (a string, or an integer in the int64 range; "
            'ids are matched as text, so 12 and "12" are the same id; null or "": a row '
            "naming no entity, NOT_FOUND), or the value of a request field.",
        },
        mode="validation",
    ),
]
"""A value in a lookup's `entities`: an entity id, or a request field's value."""
NonEmptyText = Annotated[str, Field(min_length=1)]

_SECONDS_SCHEMA = {
    "type": "number",
    "minimum": EARLIEST_TIME,
    "exclusiveMaximum": LATEST_TIME,
    "description": "epoch seconds, years 1900..2199",
}
_TIME_SCHEMA = {
    "anyOf": [_SECONDS_SCHEMA, {"type": "string", "minLength": 1, "description": "ISO-8601"}]
}


def _time(value: Any, what: str) -> float | int | str:
    """A time as the request gave it, if it may be one: epoch seconds in years
    1900..2199 (a number, not a boolean) or a non-empty string (read as ISO-8601 by
    the route, which names what is wrong with it)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{what} must be epoch seconds or an ISO-8601 string")
    if isinstance(value, str):
        if not value:
            raise ValueError(f"{what} is an empty string: give epoch seconds or ISO-8601")
        return value
    check_query_time(value, what)
    return value


def _as_of(value: Any) -> float | int | str | None:
    return None if value is None else _time(value, "as_of")


def _event_time(value: Any) -> float | int | str:
    return _time(value, "event_timestamp")


AsOf = Annotated[
    float | int | str | None,
    PlainValidator(_as_of),
    WithJsonSchema(
        {"anyOf": [*_TIME_SCHEMA["anyOf"], {"type": "null"}], "default": None},
        mode="validation",
    ),
]
"""When to evaluate a lookup: epoch seconds, ISO-8601 (naive is UTC); null or absent: now."""

EventTime = Annotated[
    float | int | str,
    PlainValidator(_event_time),
    WithJsonSchema(_TIME_SCHEMA, mode="validation"),
]
"""An entity row's time: epoch seconds or ISO-8601 (naive is UTC)."""

NAMES_ONLY: dict[str, Any] = {"propertyNames": {"pattern": NAME_PATTERN, "maxLength": 128}}
"""JSON schema of an object whose keys are names (`Name`), e.g. columns by name."""
