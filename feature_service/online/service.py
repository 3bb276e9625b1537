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
from feature_service.definitions import FeatureView
from feature_service.derived import (
    ROWS_ONE_BY_ONE,
    Needs,
    as_values,
    derive,
    derive_rows,
    needs,
    request_column,
    service_values,
)
from feature_service.online.reader import (
    NOT_FOUND,
    NULL_VALUE,
    OUTSIDE_MAX_AGE,
    PRESENT,
    ViewColumns,
    read_batched,
)
from feature_service.online.view_layouts import StaleStateError
from feature_service.requests import (
    FeatureRef,
    RequestError,
    StoreUnavailable,
    entity_rows,
    join_keys,
    key_values,
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
    """The join key columns, then one column per feature, evaluated at `t`; derived
    features from the aggregations read and the request fields in `entities`
    (`feature_service.derived`; a missing request field is a `RequestError`)."""
    n_rows = entity_rows(refs, entities, limit)
    reads = [r for ref in refs for r in ref.reads]  # a service's expression: its inputs
    views = {r.view.name: r.view for r in reads}
    wanted: dict[str, list[str]] = {}
    for r in reads:
        wanted.setdefault(r.view.name, []).append(r.feature)
    plans = {name: needs(views[name], features) for name, features in wanted.items()}
    requests = {
        name: _request_fields(views[name], plan, reads, entities) for name, plan in plans.items()
    }
    service_requests = _service_request_fields(refs, entities)
    keys = {key: key_values(entities[key]) for key in join_keys(refs)}
    # A row with a join key null or empty names no entity (None): NOT_FOUND, never read.
    requested = [
        (view, view.entity.key.id_list([keys[c] for c in view.entity.join_keys]))
        for view in views.values()
    ]
    try:
        # a view whose derived features read request fields only still reads one
        # aggregation: its statuses say whether the entity is known
        only = {
            name: frozenset(plan.aggregations or [views[name].features[0].name])
            for name, plan in plans.items()
        }
        read = dict(zip(views, await read_batched(redis, requested, t, only), strict=True))
    except OutsideRetentionError as exc:
        raise RequestError(f"as_of is too far in the past for the online store: {exc}") from None
    except StaleStateError as exc:
        raise ViewUnavailable(str(exc)) from None
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(f"online store unavailable: {type(exc).__name__}") from None
    columns = [
        OnlineColumn(
            key,
            keys[key],
            [NULL_VALUE if v is None else PRESENT for v in keys[key]],
            [None] * n_rows,
        )
        for key in keys
    ]
    for name, plan in plans.items():
        if plan.derived:
            _add_derived(read[name], views[name], plan, requests[name], n_rows)
    for ref in refs:
        if ref.service_expression is not None:
            columns.append(_service_column(ref, read, service_requests, n_rows))
            continue
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


def _request_fields(
    view: FeatureView,
    plan: Needs,
    refs: Sequence[FeatureRef],
    entities: Mapping[str, Sequence[Any]],
) -> dict[str, Any]:
    """The request fields the view's derived features read, from `entities` (Feast's
    request data: columns beside the join keys); a `RequestError` naming a missing one."""
    out = {}
    for field in plan.request_fields:
        if field not in entities:
            users = [
                r.feature
                for r in refs
                if r.view is view and field in needs(view, [r.feature]).request_fields
            ]
            raise RequestError(
                f"feature {view.name}:{users[0] if users else '?'} needs request field "
                f"{field!r}: pass it beside the join keys (`entities`; the SDK's "
                "`entity_rows`)"
            )
        out[field] = request_column(
            f"feature view {view.name!r}", view.request, field, entities[field]
        )
    return out


def _add_derived(
    columns: ViewColumns, view: FeatureView, plan: Needs, request: Mapping[str, Any], n: int
) -> None:
    """`columns` with the derived features of `plan` added: values by the expressions,
    statuses those of the entity (NOT_FOUND, OUTSIDE_MAX_AGE), else by the value."""
    base = {name: columns.values[name] for name in plan.aggregations}
    if n <= ROWS_ONE_BY_ONE:
        derived = derive_rows(view, plan.derived, base, request, n)
    else:
        derived = {
            name: as_values(column)
            for name, column in derive(view, plan.derived, base, request, n).items()
        }
    entity = next(iter(columns.statuses.values()), [PRESENT] * n)
    for name, values in derived.items():
        columns.values[name] = values
        columns.statuses[name] = [
            s if s in (NOT_FOUND, OUTSIDE_MAX_AGE) else (NULL_VALUE if v is None else PRESENT)
            for s, v in zip(entity, values, strict=True)
        ]


def _service_request_fields(
    refs: Sequence[FeatureRef], entities: Mapping[str, Sequence[Any]]
) -> dict[str, Any]:
    """The request fields of the feature service expressions in `refs`, from `entities`."""
    out: dict[str, Any] = {}
    for ref in refs:
        expression = ref.service_expression
        if expression is None:
            continue
        kinds = dict(expression.request)
        for field in sorted(expression.expression.request_fields):
            if field not in entities:
                raise RequestError(
                    f"feature {ref.output_name} needs request field {field!r}: pass it beside "
                    "the join keys (`entities`; the SDK's `entity_rows`)"
                )
            out[field] = request_column("its feature service", kinds, field, entities[field])
    return out


def _service_column(
    ref: FeatureRef, read: Mapping[str, ViewColumns], request: Mapping[str, Any], n: int
) -> OnlineColumn:
    """A feature service's expression over its inputs as read. Status: OUTSIDE_MAX_AGE if
    an input is, else NOT_FOUND if one is, else by the value; the newest input's time."""
    expression = ref.service_expression
    assert expression is not None
    inputs = {r.output_name: read[r.view.name].values[r.feature] for r in ref.inputs}
    fields = {f: request[f] for f in expression.expression.request_fields}
    if n <= ROWS_ONE_BY_ONE:
        values = service_values(expression, inputs, fields, n, columns=False)
    else:
        values = as_values(service_values(expression, inputs, fields, n, columns=True))
    statuses = []
    for i, value in enumerate(values):
        of_inputs = {read[r.view.name].statuses[r.feature][i] for r in ref.inputs}
        if OUTSIDE_MAX_AGE in of_inputs:
            statuses.append(OUTSIDE_MAX_AGE)
        elif NOT_FOUND in of_inputs:
            statuses.append(NOT_FOUND)
        else:
            statuses.append(NULL_VALUE if value is None else PRESENT)
    times = [
        max(
            (t for r in ref.inputs if (t := read[r.view.name].event_ts[i]) is not None),
            default=None,
        )
        for i in range(n)
    ]
    return OnlineColumn(ref.output_name, values, statuses, times)
