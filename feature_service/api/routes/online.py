"""`POST /get-online-features`: Feast's request and response, evaluated at request time."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError

from feature_service.aggregation.tiles import OutsideRetentionError
from feature_service.api.deps import State
from feature_service.definitions import FeatureView, Registry
from feature_service.online.reader import PRESENT, read_views
from feature_service.stream.parsing import parse_timestamp

router = APIRouter(tags=["online"])
_EPOCH = "1970-01-01T00:00:00Z"


class OnlineFeaturesRequest(BaseModel):
    """Feast's request, plus `as_of` (epoch seconds or ISO-8601; default: now)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "features": ["customer_txn:amount_sum_1d", "customer_txn:txn_count_1h"],
                "entities": {"customer_id": ["c0001", "c0002"]},
            }
        },
    )

    features: list[str] | None = Field(default=None, min_length=1)
    feature_service: str | None = None
    entities: dict[str, list[str | int]] = Field(min_length=1)
    full_feature_names: bool = False
    as_of: float | str | None = None


class FeatureColumn(BaseModel):
    values: list[Any]
    statuses: list[str]
    event_timestamps: list[str]


class Metadata(BaseModel):
    feature_names: list[str]


class OnlineFeaturesResponse(BaseModel):
    metadata: Metadata
    results: list[FeatureColumn]


def _refs(request: OnlineFeaturesRequest, registry: Registry) -> list[tuple[FeatureView, str]]:
    if (request.features is None) == (request.feature_service is None):
        raise HTTPException(422, "give exactly one of `features` or `feature_service`")
    if request.feature_service is not None:
        service = registry.feature_services.get(request.feature_service)
        if service is None:
            raise HTTPException(422, f"unknown feature service {request.feature_service!r}")
        names = list(service.features)
    else:
        names = list(request.features or [])
    refs = []
    for name in names:
        view_name, sep, feature = name.partition(":")
        view = registry.feature_views.get(view_name)
        if not sep or view is None:
            raise HTTPException(422, f"unknown feature {name!r}: use view:feature")
        if all(f.name != feature for f in view.features):
            raise HTTPException(
                422, f"unknown feature {name!r}: view {view_name!r} has no {feature!r}"
            )
        refs.append((view, feature))
    if not request.full_feature_names:
        seen = [feature for _, feature in refs]
        clashes = sorted({f for f in seen if seen.count(f) > 1})
        if clashes:
            raise HTTPException(
                422,
                f"feature names collide ({', '.join(clashes)}); set full_feature_names: true",
            )
    return refs


def _query_time(as_of: float | str | None) -> float:
    if as_of is None:
        return time.time()
    try:
        return parse_timestamp(as_of)
    except ValueError as exc:
        raise HTTPException(422, f"as_of: {exc}") from None


def _iso(ts: float | None) -> str:
    if ts is None:
        return _EPOCH
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@router.post(
    "/get-online-features",
    response_model=OnlineFeaturesResponse,
    responses={
        413: {"description": "too many entities in one request"},
        422: {"description": "unknown feature, view or entity key; bad as_of"},
        503: {"description": "the online store is unreachable"},
    },
)
async def get_online_features(
    request: OnlineFeaturesRequest, state: State
) -> OnlineFeaturesResponse:
    """Features of entities at `as_of` (default now); windows decay with time."""
    refs = _refs(request, state.registry)
    rows = {len(values) for values in request.entities.values()}
    if len(rows) != 1:
        raise HTTPException(422, "every entity key needs the same number of values")
    n_rows = rows.pop()
    if n_rows > state.settings.max_entities_per_request:
        raise HTTPException(
            413, f"{n_rows} entities; at most {state.settings.max_entities_per_request} per request"
        )
    for view, _ in refs:
        if view.entity.join_key not in request.entities:
            raise HTTPException(
                422, f"feature view {view.name!r} needs entity key {view.entity.join_key!r}"
            )
    t = _query_time(request.as_of)
    views = {view.name: view for view, _ in refs}
    try:
        requested = [
            (view, [str(v) for v in request.entities[view.entity.join_key]])
            for view in views.values()
        ]
        read = dict(zip(views, await read_views(state.redis, requested, t), strict=True))
    except OutsideRetentionError as exc:
        raise HTTPException(
            422, f"as_of is too far in the past for the online store: {exc}"
        ) from None
    except (RedisError, OSError) as exc:
        raise HTTPException(503, f"online store unavailable: {type(exc).__name__}") from None

    keys = list(dict.fromkeys(view.entity.join_key for view, _ in refs))
    names = [*keys]
    results = [
        FeatureColumn(
            values=list(request.entities[key]),
            statuses=[PRESENT] * n_rows,
            event_timestamps=[_EPOCH] * n_rows,
        )
        for key in keys
    ]
    for view, feature in refs:
        cells = [row[feature] for row in read[view.name]]
        names.append(f"{view.name}__{feature}" if request.full_feature_names else feature)
        results.append(
            FeatureColumn(
                values=[c.value for c in cells],
                statuses=[c.status for c in cells],
                event_timestamps=[_iso(c.event_ts) for c in cells],
            )
        )
    return OnlineFeaturesResponse(metadata=Metadata(feature_names=names), results=results)
