"""What the lookup API and the SDK share: read a request's online features.

No HTTP here: a problem with the request raises `RequestError` (status 4xx and a
message naming the problem, `feature_service.requests`), an unreachable dependency
raises `StoreUnavailable` (503). The API turns both into responses, the SDK raises
them as they are. Pushed events are `stream.push`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from feature_service.aggregation.state import OutsideRetentionError
from feature_service.online.reader import PRESENT, read_batched
from feature_service.online.view_layouts import StaleStateError
from feature_service.requests import (
    FeatureRef,
    RequestError,
    StoreUnavailable,
    entity_rows,
    join_keys,
)


class ViewUnavailable(RuntimeError):
    """A view's online state cannot be read by its definition (HTTP 503); the message
    names the view and the fix (`view_layouts.stale_state_message`)."""


@dataclass(frozen=True)
class OnlineColumn:
    name: str
    values: list[Any]
    statuses: list[str]
    event_ts: list[float | None]


async def online_features(
    redis: Redis,
    refs: Sequence[FeatureRef],
    entities: Mapping[str, Sequence[Any]],
    t: float,
    limit: int,
) -> list[OnlineColumn]:
    """The join key columns, then one column per feature, evaluated at `t`."""
    n_rows = entity_rows(refs, entities, limit)
    views = {ref.view.name: ref.view for ref in refs}
    requested = [
        (view, view.entity.key.id_list([entities[view.entity.join_key]])) for view in views.values()
    ]
    try:
        wanted: dict[str, set[str]] = {}
        for ref in refs:
            wanted.setdefault(ref.view.name, set()).add(ref.feature)
        only = {name: frozenset(features) for name, features in wanted.items()}
        read = dict(zip(views, await read_batched(redis, requested, t, only), strict=True))
    except OutsideRetentionError as exc:
        raise RequestError(f"as_of is too far in the past for the online store: {exc}") from None
    except StaleStateError as exc:
        raise ViewUnavailable(str(exc)) from None
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(f"online store unavailable: {type(exc).__name__}") from None
    columns = [
        OnlineColumn(key, list(entities[key]), [PRESENT] * n_rows, [None] * n_rows)
        for key in join_keys(refs)
    ]
    for ref in refs:
        view = read[ref.view.name]
        columns.append(
            OnlineColumn(
                ref.output_name,
                view.values[ref.feature],
                view.statuses[ref.feature],
                view.event_ts,
            )
        )
    return columns
