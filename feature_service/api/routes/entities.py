"""`GET /feature-views/{name}/entities`: a sample of the entity ids a view has state for,
also as lookup columns (`columns`: join key -> values, a composite key's ids taken apart
by `keys.EntityKey.values`), ready for the `entities` of a lookup."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from feature_service.api.deps import State
from feature_service.observability.prometheus import REDIS_ERRORS
from feature_service.online.redis_layout import entity_keys_pattern, entity_of_key

router = APIRouter(tags=["registry"])

# SCAN steps at most: a bounded look at the keyspace, whatever its size.
_MAX_SCAN_STEPS = 50


def _text(key: bytes | str) -> str:
    return key.decode() if isinstance(key, bytes) else key


class EntitySample(BaseModel):
    view: str
    join_key: str | None = Field(description="null for a composite key: see `join_keys`")
    join_keys: list[str]
    entities: list[str] = Field(description="entity ids (a composite key's: a JSON array)")
    columns: dict[str, list[str]] = Field(
        description="the same entities as lookup columns: join key -> values"
    )


@router.get(
    "/feature-views/{name}/entities",
    response_model=EntitySample,
    responses={404: {"description": "no such view"}, 503: {"description": "Redis is down"}},
)
async def sample_entities(
    name: str, state: State, limit: int = Query(default=100, ge=1, le=1000)
) -> EntitySample:
    """Up to `limit` entity ids with online state in the view, sorted: the population the
    UI's distribution plots are drawn over. A sample, found by a bounded SCAN."""
    view = state.registry.feature_views.get(name)
    if view is None:
        raise HTTPException(404, f"unknown feature view {name!r}")
    pattern = entity_keys_pattern(view.name)
    found: set[str] = set()
    redis: Any = state.redis
    # A Redis Cluster is scanned node by node (its SCAN cursors are per node).
    nodes = redis.get_primaries() if isinstance(redis, RedisCluster) else [None]
    try:
        for node in nodes:
            cursor = 0
            for _ in range(_MAX_SCAN_STEPS):
                if node is None:
                    cursor, keys = await redis.scan(cursor, match=pattern, count=1000)
                else:
                    cursors, keys = await redis.scan(
                        cursor, match=pattern, count=1000, target_nodes=node
                    )
                    cursor = cursors[node.name]
                found.update(entity_of_key(_text(k), view.name) for k in keys)
                if cursor == 0 or len(found) >= limit:
                    break
    except (RedisError, OSError) as exc:
        REDIS_ERRORS.inc()
        raise HTTPException(503, f"online store unavailable: {type(exc).__name__}") from None
    key = view.entity.key
    ids: list[str] = []
    values: list[tuple[str, ...]] = []
    for entity in sorted(found):
        try:
            parts = key.values(entity)
        except ValueError:  # not an id of this key (written by another definition)
            continue
        if len(parts) == len(key.join_keys) and len(ids) < limit:
            ids.append(entity)
            values.append(parts)
    return EntitySample(
        view=view.name,
        join_key=None if key.composite else key.join_keys[0],
        join_keys=list(key.join_keys),
        entities=ids,
        columns={c: [v[j] for v in values] for j, c in enumerate(key.join_keys)},
    )
