"""`POST /get-historical-features`: point-in-time features of a few entity rows.

For small requests (at most `FS_MAX_ENTITIES_PER_REQUEST` rows); large training sets
use the SDK or `feature-service training-set`. The same engine either way
(`offline.historical`), reading the offline store directly.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from feature_service.api.deps import State
from feature_service.events.parsing import parse_timestamp
from feature_service.offline.historical import TIMESTAMP_COLUMN, get_historical_features
from feature_service.requests import RequestError, entity_rows, join_keys, resolve_features

router = APIRouter(tags=["offline"])


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

    features: list[str] | None = Field(default=None, min_length=1)
    feature_service: str | None = None
    entities: dict[str, list[str | int | float | None]] = Field(min_length=1)
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
        400: {"description": "the body is not JSON"},
        413: {"description": "too many rows in one request"},
        422: {"description": "unknown feature, view or entity key; bad event_timestamp"},
        503: {"description": "the offline store is unreachable"},
    },
)
async def get_historical_features_route(
    request: HistoricalFeaturesRequest, state: State
) -> HistoricalFeaturesResponse:
    """Each row's features at its `event_timestamp`, exactly as served online then."""
    try:
        refs = resolve_features(
            state.registry, request.features, request.feature_service, request.full_feature_names
        )
        entity_rows(refs, request.entities, state.settings.max_entities_per_request)
        if TIMESTAMP_COLUMN not in request.entities:
            raise RequestError(f"entities need an {TIMESTAMP_COLUMN!r} list")
        times = [_time(i, v) for i, v in enumerate(request.entities[TIMESTAMP_COLUMN])]
        keys = join_keys(refs)
        others = [k for k in request.entities if k not in keys and k != TIMESTAMP_COLUMN]
        order = [*keys, TIMESTAMP_COLUMN, *others]
        frame = pd.DataFrame(
            {k: pd.Series(request.entities[k], dtype=object) for k in order}
        ).assign(**{TIMESTAMP_COLUMN: np.asarray(times, dtype=np.float64)})
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
    except OSError as exc:
        raise HTTPException(503, f"offline store unavailable: {type(exc).__name__}") from None
    names = [str(c) for c in out.columns]
    return HistoricalFeaturesResponse(
        metadata=Metadata(feature_names=names),
        columns={name: [_json(v) for v in out[name].tolist()] for name in names},
    )


def _time(i: int, value: Any) -> float:
    try:
        if value is None:
            raise ValueError("missing")
        return parse_timestamp(value)
    except ValueError as exc:
        raise RequestError(f"{TIMESTAMP_COLUMN}[{i}]: {exc}") from None


def _json(value: Any) -> Any:
    """A cell as JSON: numpy scalars as Python ones, NaN/NA as null."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
