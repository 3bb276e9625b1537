"""What the lookup API and the SDK share: resolve feature references, read a request's
online features, validate and produce pushed events.

No HTTP here: a problem with the request raises `RequestError` (status 4xx and a
message naming the problem), an unreachable dependency raises `StoreUnavailable`
(503). The API turns both into responses, the SDK raises them as they are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from feature_service.aggregation.tiles import OutsideRetentionError
from feature_service.aggregation.windows import (
    EARLIEST_TIME,
    LATEST_TIME,
    TIME_RANGE,
    in_time_range,
)
from feature_service.definitions import FeatureView, Registry, Source
from feature_service.online.reader import PRESENT, FeatureValue, read_views
from feature_service.online.view_layouts import StaleStateError
from feature_service.stream.parsing import parse_records, parse_timestamp

MAX_EVENT_BYTES = 1_000_000
"""Largest pushed event (its JSON value, in bytes): under the producer's and Kafka's default
request and message limits (1 MiB) with room for the batch header, so an event that
passes here is never refused by the broker as too large."""


class RequestError(ValueError):
    """The request is wrong; `status` is the HTTP status that says how (422, 413)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class StoreUnavailable(RuntimeError):
    """A dependency (Redis, the broker) did not answer; retry later (HTTP 503)."""


class ViewUnavailable(RuntimeError):
    """A view's online state cannot be read by its definition (HTTP 503); the message
    names the view and the fix (`view_layouts.stale_state_message`)."""


@dataclass(frozen=True)
class FeatureRef:
    """One requested feature and the column name it is returned under."""

    view: FeatureView
    feature: str
    output_name: str


def resolve_features(
    registry: Registry,
    features: Sequence[str] | None,
    feature_service: str | None = None,
    full_feature_names: bool = False,
) -> list[FeatureRef]:
    """`view:feature` references (or a feature service) -> `FeatureRef`s in request order.

    Output names are the feature names, or `view__feature` with `full_feature_names`;
    names that would collide are refused rather than silently overwritten.
    """
    if (features is None) == (feature_service is None):
        raise RequestError("give exactly one of `features` or `feature_service`")
    if feature_service is not None:
        service = registry.feature_services.get(feature_service)
        if service is None:
            raise RequestError(f"unknown feature service {feature_service!r}")
        names = list(service.features)
    else:
        names = list(features or [])
    if not names:
        raise RequestError("no features requested")
    refs = []
    for name in names:
        view_name, sep, feature = name.partition(":")
        view = registry.feature_views.get(view_name)
        if not sep or view is None:
            raise RequestError(f"unknown feature {name!r}: use view:feature")
        if all(f.name != feature for f in view.features):
            raise RequestError(f"unknown feature {name!r}: view {view_name!r} has no {feature!r}")
        output = f"{view_name}__{feature}" if full_feature_names else feature
        refs.append(FeatureRef(view, feature, output))
    outputs = [ref.output_name for ref in refs]
    clashes = sorted({o for o in outputs if outputs.count(o) > 1})
    if clashes:
        hint = "" if full_feature_names else "; set full_feature_names: true"
        raise RequestError(f"feature names collide ({', '.join(clashes)}){hint}")
    return refs


def join_keys(refs: Sequence[FeatureRef]) -> list[str]:
    """The entity keys the features need, in order of first use."""
    return list(dict.fromkeys(ref.view.entity.join_key for ref in refs))


def check_query_time(t: float, what: str) -> float:
    """`t` if it lies in the years events may have (`windows.TIME_RANGE`), else a 422
    naming `what`.

    Windows over times such as 1e308 would take tile arithmetic far outside ordinary
    epoch seconds, and no event can be there; refusing them here keeps every reader
    on the same range as the stream.

    >>> check_query_time(1e308, "as_of")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    feature_service.online.service.RequestError: as_of 1e+308 is outside 1900-01-01..2199-12-31 ...
    """
    if not in_time_range(t):
        raise RequestError(
            f"{what} {t!r} is outside {TIME_RANGE} "
            f"(epoch seconds {EARLIEST_TIME:.0f} to {LATEST_TIME - 1:.0f})"
        )
    return t


def query_time(as_of: float | str | None) -> float:
    """`as_of` as epoch seconds (years 1900..2199, `check_query_time`); now when absent."""
    if as_of is None:
        return time.time()
    if isinstance(as_of, (int, float)) and not isinstance(as_of, bool):
        return check_query_time(float(as_of), "as_of")
    try:
        t = parse_timestamp(as_of)
    except ValueError as exc:
        raise RequestError(f"as_of: {exc}") from None
    return check_query_time(t, "as_of")


def entity_rows(
    refs: Sequence[FeatureRef], entities: Mapping[str, Sequence[Any]], limit: int
) -> int:
    """Check the entity columns of a request; return the number of rows."""
    lengths = {len(values) for values in entities.values()}
    if len(lengths) > 1:
        raise RequestError("every entity key needs the same number of values")
    n_rows = lengths.pop() if lengths else 0
    if n_rows > limit:
        raise RequestError(f"{n_rows} entities; at most {limit} per request", status=413)
    for key in join_keys(refs):
        if key not in entities:
            views = sorted({r.view.name for r in refs if r.view.entity.join_key == key})
            raise RequestError(f"feature view {views[0]!r} needs entity key {key!r}")
    return n_rows


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
        (view, [str(v) for v in entities[view.entity.join_key]]) for view in views.values()
    ]
    try:
        wanted: dict[str, set[str]] = {}
        for ref in refs:
            wanted.setdefault(ref.view.name, set()).add(ref.feature)
        only = {name: frozenset(features) for name, features in wanted.items()}
        read = dict(zip(views, await read_views(redis, requested, t, only), strict=True))
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
        cells: list[FeatureValue] = [row[ref.feature] for row in read[ref.view.name]]
        columns.append(
            OnlineColumn(
                ref.output_name,
                [c.value for c in cells],
                [c.status for c in cells],
                [c.event_ts for c in cells],
            )
        )
    return columns


def push_messages(
    registry: Registry, source_name: str, df: Mapping[str, Sequence[Any]], limit: int
) -> tuple[Source, list[tuple[bytes | None, bytes]]]:
    """Validate pushed rows against the source schema; return (key, value) messages.

    All or nothing: one bad row refuses the whole push, naming the row and the problem,
    so a client never has to find out which half of its request went through. Beyond
    the schema (`stream.parsing`, the worker's own rules): a NaN or infinite number is a
    422, because JSON cannot carry it (the encoder would turn it into null, which the
    worker refuses as invalid JSON when it comes as text); an event larger than
    `MAX_EVENT_BYTES` is a 413 naming its largest field.
    """
    source = registry.sources.get(source_name)
    if source is None:
        known = ", ".join(sorted(registry.sources)) or "none"
        raise RequestError(f"unknown push source {source_name!r} (known: {known})")
    lengths = {len(values) for values in df.values()}
    if len(lengths) > 1:
        raise RequestError("every column of `df` needs the same number of values")
    n_rows = lengths.pop() if lengths else 0
    if n_rows == 0:
        raise RequestError("`df` has no rows")
    if n_rows > limit:
        raise RequestError(f"{n_rows} rows; at most {limit} per push", status=413)
    columns = list(df)
    _refuse_non_finite(df)
    values = [
        orjson.dumps({c: df[c][i] for c in columns}, option=orjson.OPT_SERIALIZE_NUMPY)
        for i in range(n_rows)
    ]
    for i, value in enumerate(values):
        if len(value) > MAX_EVENT_BYTES:
            sizes = {
                c: len(orjson.dumps(df[c][i], option=orjson.OPT_SERIALIZE_NUMPY)) for c in columns
            }
            largest = max(sizes, key=sizes.__getitem__)
            raise RequestError(
                f"row {i}: the event is {len(value)} bytes as JSON, at most {MAX_EVENT_BYTES}"
                f" (field {largest!r} is {sizes[largest]} bytes)",
                status=413,
            )
    parsed = parse_records(source, list(enumerate(values)))
    if parsed.rejected:
        first = parsed.rejected[0]
        more = len(parsed.rejected) - 1
        extra = f" (and {more} more bad rows)" if more else ""
        raise RequestError(f"row {first.offset}: {first.reason}{extra}")
    key_field = source.key
    messages = [
        (None if key_field is None else str(df[key_field][i]).encode(), value)
        for i, value in enumerate(values)
    ]
    return source, messages


def _refuse_non_finite(df: Mapping[str, Sequence[Any]]) -> None:
    """RequestError naming the first row (in row order) holding a NaN or an infinity."""
    bad: tuple[int, str, float] | None = None
    for column, values in df.items():
        for i, v in enumerate(values):
            if isinstance(v, float) and not math.isfinite(v):  # numpy float64 included
                if bad is None or i < bad[0]:
                    bad = (i, column, v)
                break
    if bad is not None:
        i, column, v = bad
        raise RequestError(
            f"row {i}: field {column!r} is {v!r}, which JSON cannot hold (send null for a "
            "missing value)"
        )


async def produce(
    producer: AIOKafkaProducer, topic: str, messages: Sequence[tuple[bytes | None, bytes]]
) -> None:
    """Send and wait until the broker has every message (acks as the producer is set)."""
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in messages]
        for future in futures:
            await future
    except MessageSizeTooLargeError:  # push_messages keeps events below this: a backstop
        raise RequestError("an event is larger than the broker accepts", status=413) from None
    except KafkaError as exc:
        raise StoreUnavailable(f"broker unavailable: {type(exc).__name__}") from None
