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
>>> TypeAdapter(EntityId).validate_python(2**53)  # doctest: +ELLIPSIS
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
SAFE_INTEGER = 2**53 - 1
"""Largest integer JSON carries exactly everywhere (I-JSON, RFC 7493: an IEEE double)."""

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
    """`5.0` as `5`: JSON (and a JSON schema's `integer`) does not tell them apart."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _safe_integer(value: int) -> int:
    if not -SAFE_INTEGER <= value <= SAFE_INTEGER:
        raise ValueError(
            f"an integer id must lie within +-(2**53 - 1), the integers JSON carries exactly "
            f"(I-JSON): send {_digits(value)} as a string, the same id (ids are matched as text)"
        )
    return value


def _digits(value: int) -> str:
    text = str(value)
    return text if len(text) <= 30 else f"{text[:20]}... ({len(text)} digits)"


SafeInteger = Annotated[
    int,
    BeforeValidator(_integral_float_as_int),
    AfterValidator(_safe_integer),
    WithJsonSchema(
        {"type": "integer", "minimum": -SAFE_INTEGER, "maximum": SAFE_INTEGER},
        mode="validation",
    ),
]
"""An integer JSON carries exactly; beyond, a 422 saying to send it as a string. Bounds
that a float holds exactly, so the schema (whose bounds OpenAPI holds as floats) states
them exactly too."""
EntityId = Annotated[
    str | SafeInteger,
    Field(
        description="An entity id: a string, or an integer within +-(2**53 - 1); ids are "
        'matched as text, so 12 and "12" are the same id.'
    ),
]
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
