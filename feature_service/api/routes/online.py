"""`POST /get-online-features`: Feast's request and response, evaluated at request time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field

from feature_service.api.deps import ApiState, State
from feature_service.api.json_body import JsonBodyRoute, cut
from feature_service.api.request_fields import (
    NAMES_ONLY,
    AsOf,
    EntityValue,
    FeatureRefText,
    Name,
)
from feature_service.definitions import Registry
from feature_service.observability.prometheus import REDIS_ERRORS
from feature_service.online.service import ViewUnavailable, online_features
from feature_service.requests import (
    FeatureRef,
    RequestError,
    StoreUnavailable,
    query_time,
    resolve_features,
)

router = APIRouter(tags=["online"], route_class=JsonBodyRoute)
_EPOCH = "1970-01-01T00:00:00Z"


class OnlineFeaturesRequest(BaseModel):
    """Feast's request, plus `as_of` (epoch seconds or ISO-8601; default: now).

    Every field Feast 0.67's clients send is accepted (its remote online store, its MCP
    server; README "Feast compatibility"); any other field is a 422.
    `include_feature_view_version_metadata` is ignored: views have no versions here, so
    the answer carries no `feature_view_metadata`. `features: []` beside a
    `feature_service` (Feast's MCP client sends both) means the service.
    """

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # `as_of: false` or an entity id `true` is a 422, not a coercion
        json_schema_extra={
            "example": {
                "features": ["customer_txn:amount_sum_1d", "customer_txn:txn_count_1h"],
                "entities": {"customer_id": ["c0001", "c0002"]},
            }
        },
    )

    features: list[FeatureRefText] | None = None
    feature_service: Name | None = None
    entities: dict[Name, list[EntityValue]] = Field(
        min_length=1,
        json_schema_extra=NAMES_ONLY,
        description="join key -> entity ids, one column per join key (a composite key: "
        "each of its columns, zipped into rows; a row with a null or empty key is "
        "NOT_FOUND); and request field -> values, for derived features that read "
        "`request.<field>` (Feast's request data)",
    )
    full_feature_names: bool = False
    as_of: AsOf = None
    include_feature_view_version_metadata: bool = Field(
        default=False, description="Sent by Feast's client; ignored (views have no versions)."
    )


class FeatureColumn(BaseModel):
    values: list[Any]
    statuses: list[str]
    event_timestamps: list[str]


class Metadata(BaseModel):
    feature_names: list[str]


class OnlineFeaturesResponse(BaseModel):
    metadata: Metadata
    results: list[FeatureColumn]


def _iso(ts: float | None) -> str:
    if ts is None:
        return _EPOCH
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@router.post(
    "/get-online-features",
    response_model=OnlineFeaturesResponse,
    responses={
        413: {"description": "too many entities in one request"},
        415: {"description": "the body is not JSON by its Content-Type"},
        422: {
            "description": "the body is not JSON or not this schema; an unknown feature, "
            "view, service or entity key; an id that is no string or integer; a missing "
            "request field, or one of the wrong type; entity columns of unequal length; an "
            "as_of string that is no time in years 1900..2199"
        },
        503: {
            "description": "the online store is unreachable, or a view's stored state was "
            "written by another definition of it (the message says how to fix it)"
        },
    },
)
async def get_online_features(request: OnlineFeaturesRequest, state: State) -> Response:
    """Features of entities at `as_of` (default now); windows decay with time."""
    # Most lookups are answered before they reach here, by `api.lookup_path` (the same
    # `lookup`); this route answers the rest and documents the contract.
    try:
        body = await lookup(state, request)
    except LookupFailed as exc:
        raise HTTPException(exc.status, exc.detail) from None
    return Response(body, media_type="application/json")


_RESOLVED_MAX = 1024
_resolved_cache: dict[tuple[Any, ...], list[FeatureRef]] = {}
_resolved_registry: list[Registry] = []  # the registry the cache is of


def _resolved(
    registry: Registry,
    features: list[str] | None,
    feature_service: str | None,
    full_feature_names: bool,
) -> list[FeatureRef]:
    """`resolve_features`, remembered per request shape for the registry served (a
    model asks for the same features every time; 50 references cost ~0.1 ms to
    resolve). A new registry (definitions reloaded) starts afresh; refusals are not
    remembered."""
    if not _resolved_registry or _resolved_registry[0] is not registry:
        _resolved_cache.clear()
        _resolved_registry[:] = [registry]
    key = (None if features is None else tuple(features), feature_service, full_feature_names)
    refs = _resolved_cache.get(key)
    if refs is None:
        refs = resolve_features(registry, features, feature_service, full_feature_names)
        if len(_resolved_cache) >= _RESOLVED_MAX:
            _resolved_cache.clear()
        _resolved_cache[key] = refs
    return refs


class LookupFailed(Exception):
    """A lookup refused: the HTTP status and the message of its `{"detail": ...}`
    (cut short: a message never carries a request back, `json_body.cut`)."""

    def __init__(self, status: int, detail: str) -> None:
        detail = cut(detail)
        super().__init__(detail)
        self.status = status
        self.detail = detail


class LookupRequest(Protocol):
    """A decoded lookup body: `OnlineFeaturesRequest`, or the fast path's `LookupBody`."""

    @property
    def features(self) -> list[str] | None: ...
    @property
    def feature_service(self) -> str | None: ...
    @property
    def full_feature_names(self) -> bool: ...
    @property
    def entities(self) -> Mapping[str, Sequence[str | int | float | bool | None]]: ...
    @property
    def as_of(self) -> float | str | None: ...


async def lookup(state: ApiState, request: LookupRequest) -> bytes:
    """The JSON answer to a lookup (Feast's response shape); `LookupFailed` otherwise."""
    features = request.features
    feature_service = request.feature_service
    full_feature_names = request.full_feature_names
    entities = request.entities
    as_of = request.as_of
    try:
        if not features and feature_service is not None:
            features = None  # Feast's MCP client sends `features: []` with a service
        refs = _resolved(state.registry, features, feature_service, full_feature_names)
        columns = await online_features(
            state.redis,
            refs,
            entities,
            query_time(as_of),
            state.settings.max_entities_per_request,
        )
    except RequestError as exc:
        raise LookupFailed(exc.status, str(exc)) from None
    except StoreUnavailable as exc:
        REDIS_ERRORS.inc()
        raise LookupFailed(503, str(exc)) from None
    except ViewUnavailable as exc:
        raise LookupFailed(503, str(exc)) from None
    # Serialised here with orjson rather than validated again through `response_model`
    # (which still documents the shape): a 100 x 50 answer has 15,000 cells.
    iso: dict[float | None, str] = {}
    results = []
    for c in columns:
        stamps = []
        for ts in c.event_ts:
            text = iso.get(ts)
            if text is None:
                text = iso[ts] = _iso(ts)
            stamps.append(text)
        results.append({"values": c.values, "statuses": c.statuses, "event_timestamps": stamps})
    body = {"metadata": {"feature_names": [c.name for c in columns]}, "results": results}
    return orjson.dumps(body)
