"""`GET /feature-views[/{name}]`: the registry as the API serves it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from feature_service.api.deps import State
from feature_service.definitions import FeatureView
from feature_service.durations import format_duration

router = APIRouter(tags=["registry"])


class FeatureOut(BaseModel):
    name: str
    aggregation: str
    column: str | None
    window: str | None
    hop: str | None
    where: str | None
    description: str
    params: dict[str, Any] = Field(
        default_factory=dict, description="Its aggregation's parameters (e.g. k, percentile)."
    )


class DerivedFeatureOut(BaseModel):
    name: str
    expression: str
    kind: str  # float, bool or string
    description: str


class FeatureViewOut(BaseModel):
    name: str
    entity: str
    join_key: str | None = Field(
        description="The entity's join key; null when it has several (see `join_keys`)."
    )
    join_keys: list[str] = Field(
        description="The entity's join key columns, in order: one, or several for a "
        "composite key (a lookup passes each as a column of `entities`)."
    )
    source: str
    topic: str
    ttl: str | None
    description: str
    features: list[FeatureOut]
    derived: list[DerivedFeatureOut] = []  # computed from `features` and `request` fields
    request: dict[str, str] = {}  # fields a lookup passes beside the join key


def _view_out(view: FeatureView) -> FeatureViewOut:
    return FeatureViewOut(
        name=view.name,
        entity=view.entity.name,
        join_key=None if view.entity.key.composite else view.entity.join_keys[0],
        join_keys=list(view.entity.join_keys),
        source=view.source.name,
        topic=view.source.topic,
        ttl=format_duration(view.ttl_s) if view.ttl_s else None,
        description=view.description,
        features=[
            FeatureOut(
                name=f.name,
                aggregation=f.aggregation,
                column=f.column,
                window=format_duration(f.window_s) if f.window_s else None,
                hop=format_duration(f.hop_s) if f.hop_s else None,
                where=f.where.text if f.where else None,
                description=f.description,
                params={k: list(v) if isinstance(v, tuple) else v for k, v in f.params},
            )
            for f in view.features
        ],
        derived=[
            DerivedFeatureOut(
                name=d.name, expression=d.expression.text, kind=d.kind, description=d.description
            )
            for d in view.derived
        ],
        request=dict(view.request),
    )


@router.get("/feature-views", response_model=list[FeatureViewOut])
async def list_feature_views(state: State) -> list[FeatureViewOut]:
    """Every feature view with its features."""
    return [_view_out(v) for v in state.registry.feature_views.values()]


@router.get(
    "/feature-views/{name}",
    response_model=FeatureViewOut,
    responses={404: {"description": "no such view"}},
)
async def get_feature_view(name: str, state: State) -> FeatureViewOut:
    """One feature view; 404 naming it when it does not exist."""
    view = state.registry.feature_views.get(name)
    if view is None:
        raise HTTPException(status_code=404, detail=f"unknown feature view {name!r}")
    return _view_out(view)
