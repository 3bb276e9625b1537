"""Read features at a time `t` from the online state: one round trip per request.

For every (view, entity) the reader asks Redis for exactly the fields the tile layout
needs at `t` (`TileLayout.plan`), all in one pipeline, and evaluates them with the same
aggregation code the worker and the offline path use. Values are computed at request
time, so windows decay: a 1h count read two hours after the last event is 0.

Statuses follow Feast: `PRESENT`, `NULL_VALUE` (the feature has no value at `t`, e.g.
the mean of an empty window), `NOT_FOUND` (no state for the entity), and
`OUTSIDE_MAX_AGE` (the entity's newest event is older than the view's ttl at `t`).
The event timestamp reported is the entity's newest event time in the store, which for
an `as_of` in the past may be later than `as_of`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from redis.asyncio import Redis

from feature_service.aggregation.tiles import LayoutMismatchError, NeedMoreFields, decode_field
from feature_service.definitions import FeatureView
from feature_service.online.redis_layout import LAST_EVENT_FIELD, entity_key, view_layout
from feature_service.online.view_layouts import StaleStateError

PRESENT = "PRESENT"
NULL_VALUE = "NULL_VALUE"
NOT_FOUND = "NOT_FOUND"
OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"


class FeatureValue(NamedTuple):
    value: Any
    status: str
    event_ts: float | None  # the entity's newest event time, if known


async def read_views(
    redis: Redis,
    requests: Sequence[tuple[FeatureView, Sequence[str]]],
    t: float,
    only: Mapping[str, frozenset[str]] | None = None,
) -> list[list[dict[str, FeatureValue]]]:
    """For each (view, entities): every feature of each entity at time `t`, in order
    (only the features named in `only[view name]`, when given: fewer fields read and
    evaluated).

    All views are read in one pipeline (one round trip). Raises
    `aggregation.tiles.OutsideRetentionError` when `t` reaches before the state, and
    `view_layouts.StaleStateError` when a view's state was written by another layout.
    """
    only = only or {}
    plans = [_plan(view, t, only.get(view.name)) for view, _ in requests]
    async with redis.pipeline(transaction=False) as pipe:
        for (view, entities), (names, _, _) in zip(requests, plans, strict=True):
            for entity in entities:
                pipe.hmget(entity_key(view.name, entity), names)
        replies = iter(await pipe.execute())
    return [
        await _view_values(redis, view, entities, plan, [next(replies) for _ in entities], t)
        for (view, entities), plan in zip(requests, plans, strict=True)
    ]


def _plan(
    view: FeatureView, t: float, only: frozenset[str] | None
) -> tuple[list[str], frozenset[str], frozenset[str] | None]:
    names, planned = view_layout(view).planned(t, only)
    return [*names, LAST_EVENT_FIELD], planned, only


async def _view_values(
    redis: Redis,
    view: FeatureView,
    entities: Sequence[str],
    plan: tuple[list[str], frozenset[str], frozenset[str] | None],
    replies: list[Any],
    t: float,
) -> list[dict[str, FeatureValue]]:
    out = []
    names, planned, only = plan
    not_found = {f.name: FeatureValue(None, NOT_FOUND, None) for f in view.features}
    for entity, raw in zip(entities, replies, strict=True):
        # only the fields the hash has: a planned name missing from `fields` is absent
        fields = {n: decode_field(v) for n, v in zip(names, raw, strict=True) if v is not None}
        if "v" not in fields:  # no state at all: the entity is unknown to this view
            out.append(not_found)
            continue
        values = await _evaluate(redis, view, entity, fields, planned, only, t)
        last = fields.get(LAST_EVENT_FIELD)
        expired = view.ttl_s is not None and last is not None and t - last > view.ttl_s
        out.append(
            {
                name: FeatureValue(
                    value,
                    OUTSIDE_MAX_AGE if expired else (NULL_VALUE if value is None else PRESENT),
                    last,
                )
                for name, value in values.items()
            }
        )
    return out


async def _evaluate(
    redis: Redis,
    view: FeatureView,
    entity: str,
    fields: dict[str, Any],
    planned: frozenset[str],
    only: frozenset[str] | None,
    t: float,
) -> dict[str, Any]:
    layout = view_layout(view)
    for _ in range(3):
        try:
            return layout.evaluate_fields(fields, t, absent=planned, only=only)
        except NeedMoreFields as more:  # a lifetime feature asked about the past
            raw = await redis.hmget(entity_key(view.name, entity), more.fields)
            fields.update({n: decode_field(v) for n, v in zip(more.fields, raw, strict=True)})
        except LayoutMismatchError:  # the view's definition changed under its name
            raise StaleStateError(view.name) from None
    raise RuntimeError(f"evaluation of {view.name}:{entity} kept asking for more fields")
