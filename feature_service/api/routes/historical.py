"""`POST /get-historical-features`: point-in-time features of a few entity rows.

For small requests (at most `FS_MAX_ENTITIES_PER_REQUEST` rows); large training sets
use the SDK or `feature-service training-set`. The same engine either way
(`offline.historical`), reading the offline store directly. The answer's
`event_timestamp` column holds the times as the request gave them (an ISO-8601 string
stays that string), like every other column of the entity rows.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from feature_service.aggregation.values import plain_value
from feature_service.api.deps import State
from feature_service.api.json_body import JsonBodyRoute, cut
from feature_service.api.request_fields import (
    NAMES_ONLY,
    EventTime,
    FeatureRefText,
    Int64,
    Name,
)
from feature_service.events.parsing import parse_timestamp
from feature_service.offline.historical import TIMESTAMP_COLUMN, get_historical_features
from feature_service.requests import RequestError, entity_rows, join_keys, resolve_features

router = APIRouter(tags=["offline"], route_class=JsonBodyRoute)

EntityValue = str | Int64 | float | None


class EntityRows(BaseModel):
    """Entity rows as columns: `event_timestamp`, the join key of every view asked
    for, and any other columns (returned as they are)."""

    model_config = ConfigDict(extra="allow", strict=True, json_schema_extra=NAMES_ONLY)
    __pydantic_extra__: dict[Name, list[EntityValue]] = Field(init=False)

    event_timestamp: list[EventTime] = Field(
        description="the time of each row: epoch seconds or ISO-8601 (naive is UTC)"
    )

    def columns(self) -> dict[str, list[Any]]:
        """Every column by name, `event_timestamp` first."""
        return {TIMESTAMP_COLUMN: self.event_timestamp, **(self.model_extra or {})}


class HistoricalFeaturesRequest(BaseModel):
    """Feature references and entity rows, each with the time to evaluate it at."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # `full_feature_names: 0` or an id `true` is a 422, not a coercion
        json_schema_extra={
            "example": {
                "features": ["customer_txn:amount_sum_1d", "customer_txn:txn_count_1h"],
                "entities": {
                    "customer_id": ["c001", "c002"],
                    "event_timestamp": [1793707200.0, "2026-11-03T12:00:00Z"],
                },
            }
        },
    )

    features: list[FeatureRefText] | None = Field(default=None, min_length=1)
    feature_service: Name | None = None
    entities: EntityRows
    full_feature_names: bool = False


class Metadata(BaseModel):
    feature_names: list[str]


class HistoricalFeaturesResponse(BaseModel):
    metadata: Metadata
    columns: dict[str, list[Any]]


@router.post(
    "/get-historical-features",
    response_model=HistoricalFeaturesResponse,
    responses={
        413: {"description": "too many rows in one request"},
        415: {"description": "the body is not JSON by its Content-Type"},
        422: {
            "description": "the body is not JSON or not this schema; an unknown feature, "
            "view, service or entity key; columns of unequal length; an event_timestamp "
            "string that is no time in years 1900..2199"
        },
        503: {
            "description": "the offline store is unreachable, or a file of it cannot be "
            "read (the message names it)"
        },
    },
)
async def get_historical_features_route(
    request: HistoricalFeaturesRequest, state: State
) -> HistoricalFeaturesResponse:
    """Each row's features at its `event_timestamp`, exactly as served online then;
    the entity rows come back as they were given."""
    given = request.entities.columns()
    try:
        refs = resolve_features(
            state.registry, request.features, request.feature_service, request.full_feature_names
        )
        entity_rows(refs, given, state.settings.max_entities_per_request)
        times = [_time(i, v) for i, v in enumerate(given[TIMESTAMP_COLUMN])]
        keys = join_keys(refs)
        others = [k for k in given if k not in keys and k != TIMESTAMP_COLUMN]
        order = [*keys, TIMESTAMP_COLUMN, *others]
        frame = pd.DataFrame({k: pd.Series(given[k], dtype=object) for k in order}).assign(
            **{TIMESTAMP_COLUMN: np.asarray(times, dtype=np.float64)}
        )
        out = await asyncio.to_thread(
            get_historical_features,
            state.registry,
            state.settings.offline_uri,
            frame,
            [f"{r.view.name}:{r.feature}" for r in refs],
            None,
            request.full_feature_names,
        )
    except RequestError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    except OSError as exc:  # an unreadable file of the log names itself
        detail = str(exc) or type(exc).__name__
        raise HTTPException(503, cut(f"offline store unavailable: {detail}")) from None
    names = [str(c) for c in out.columns]
    columns = {name: [plain_value(v) for v in out[name].tolist()] for name in names}
    columns[TIMESTAMP_COLUMN] = list(given[TIMESTAMP_COLUMN])  # as given, not as parsed
    return HistoricalFeaturesResponse(metadata=Metadata(feature_names=names), columns=columns)


def _time(i: int, value: float | int | str) -> float:
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise RequestError(f"{TIMESTAMP_COLUMN}[{i}]: {exc}") from None
