"""Read features at a time `t` from the online state: one round trip per request.

For every (view, entity) the reader GETs the entity's state (`aggregation.state`, one
value per key), all in one pipeline, decodes each view's states together and evaluates
every requested feature for all of them at once (`aggregation.state.evaluate`, the
training sets' window code). Values are computed at request time, so windows decay: a
1h count read two hours after the last event is 0.

Statuses follow Feast: `PRESENT`, `NULL_VALUE` (the feature has no value at `t`, e.g.
the mean of an empty window), `NOT_FOUND` (no state for the entity), and
`OUTSIDE_MAX_AGE` (the entity's newest event is older than the view's ttl at `t`).
The event timestamp reported is the entity's newest event time in the store, which for
an `as_of` in the past may be later than `as_of`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from feature_service.aggregation.state import (
    LayoutMismatchError,
    StaleFormatError,
    decode,
    evaluate,
)
from feature_service.definitions import FeatureView
from feature_service.online.redis_layout import entity_key, view_layout
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
    (only the features named in `only[view name]`, when given).

    All views are read in one pipeline (one round trip). Raises
    `aggregation.state.OutsideRetentionError` when `t` reaches before the state, and
    `view_layouts.StaleStateError` when a view's state was written by another layout
    (or by engine v1).
    """
    only = only or {}
    async with redis.pipeline(transaction=False) as pipe:
        for view, entities in requests:
            for entity in entities:
                pipe.get(entity_key(view.name, entity))
        replies = await pipe.execute(raise_on_error=False)
    out = []
    at = 0
    for view, entities in requests:
        blobs = replies[at : at + len(entities)]
        at += len(entities)
        if any(isinstance(b, ResponseError) for b in blobs):  # WRONGTYPE: a v1 hash
            raise StaleStateError(view.name)
        for b in blobs:
            if isinstance(b, Exception):
                raise b
        out.append(view_values(view, blobs, t, only.get(view.name)))
    return out


def view_values(
    view: FeatureView,
    blobs: Sequence[bytes | None],
    t: float,
    only: frozenset[str] | None = None,
) -> list[dict[str, FeatureValue]]:
    """The features of `view` at `t` of entities whose stored states are `blobs`."""
    layout = view_layout(view)
    names = [n for n in layout.names if only is None or n in only]
    try:
        states = decode(layout, blobs)
    except (LayoutMismatchError, StaleFormatError):  # the view's definition changed
        raise StaleStateError(view.name) from None
    present = [i for i, meta in enumerate(states.metas) if meta is not None]
    not_found = {name: FeatureValue(None, NOT_FOUND, None) for name in names}
    out: list[dict[str, FeatureValue]] = [not_found] * len(blobs)
    if not present:
        return out
    codes = np.asarray(present, dtype=np.int64)
    values = evaluate(layout, states, codes, np.full(codes.size, float(t)), names)
    columns = [values[name] for name in names]
    for r, i in enumerate(present):
        meta = states.metas[i]
        assert meta is not None
        last = meta.last
        expired = view.ttl_s is not None and last is not None and t - last > view.ttl_s
        row = {}
        for name, column in zip(names, columns, strict=True):
            value = column[r]
            status = OUTSIDE_MAX_AGE if expired else (NULL_VALUE if value is None else PRESENT)
            row[name] = FeatureValue(value, status, last)
        out[i] = row
    return out
