"""Pushed events (`POST /push`, `FeatureStore.push`): rows validated against the
source's schema by the worker's own parser, written in the source's format (JSON, or
Avro, Protobuf, JSON Schema: `encode_pushed`), then produced to the source's topic.

Pushed events take the same path as every other event (topic -> worker -> Redis and
the offline log), so they are counted exactly once and land in training sets too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from feature_service.definitions import Registry, Source
from feature_service.formats import CodecError
from feature_service.plan import source_plan
from feature_service.requests import RequestError, StoreUnavailable

MAX_EVENT_BYTES = 1_000_000
"""Largest pushed event (its JSON value, in bytes): under the producer's and Kafka's default
request and message limits (1 MiB) with room for the batch header, so an event that
passes here is never refused by the broker as too large."""


def push_messages(
    registry: Registry, source_name: str, df: Mapping[str, Sequence[Any]], limit: int
) -> tuple[Source, list[tuple[bytes | None, bytes]]]:
    """Validate pushed rows against the source schema; return (key, value) messages.

    All or nothing: one bad row refuses the whole push, naming the row and the problem,
    so a client never has to find out which half of its request went through. Beyond
    the schema (`events.parsing`, the worker's own rules): a column the source does not
    have is a 422 naming it (as Feast refuses a push whose columns are not its source's,
    rather than sending data nobody declared to the topic); a value JSON cannot carry is
    a 422 naming its row and field: a NaN or an infinity (the encoder would turn it into
    null, which the worker refuses as invalid JSON when it comes as text), an integer
    beyond 64 bits, a string that is no valid Unicode (a lone surrogate), nesting deeper
    than 254 levels; an event larger than `MAX_EVENT_BYTES` is a 413 naming its largest
    field.
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
    _refuse_unknown_columns(source, df)
    columns = list(df)
    _refuse_non_finite(df)
    values = [_event_json(i, {c: df[c][i] for c in columns}) for i in range(n_rows)]
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
    parsed = source_plan(registry, source_name).parse(list(enumerate(values)))
    if parsed.rejected:
        first = parsed.rejected[0]
        more = len(parsed.rejected) - 1
        extra = f" (and {more} more bad rows)" if more else ""
        raise RequestError(f"row {first.offset}: {first.reason}{extra}")
    key_field = source.key
    messages = [
        (_message_key(df[key_field][i]) if key_field is not None else None, value)
        for i, value in enumerate(values)
    ]
    return source, messages


def _message_key(value: Any) -> bytes | None:
    """The topic key of a row: its key column as text; none for a null or empty key
    (the event still counts in the views whose keys it has)."""
    return None if value is None or value == "" else str(value).encode()


def _refuse_unknown_columns(source: Source, df: Mapping[str, Sequence[Any]]) -> None:
    """RequestError naming the columns of `df` that `source` does not have."""
    known = {*source.schema, source.timestamp_field}
    unknown = [c for c in df if c not in known]
    if unknown:
        shown = ", ".join(_shown(c) for c in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise RequestError(
            f"source {source.name!r} has no column(s) {shown}{more} "
            f"(its columns: {', '.join(sorted(known))})"
        )


def _event_json(row: int, event: Mapping[str, Any]) -> bytes:
    """One event as JSON text; a RequestError naming the row and the field whose value
    JSON cannot carry (an integer beyond 64 bits, a lone surrogate, deep nesting)."""
    try:
        return orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError as whole:
        for column, value in event.items():
            try:
                orjson.dumps({column: value}, option=orjson.OPT_SERIALIZE_NUMPY)
            except orjson.JSONEncodeError as exc:
                raise RequestError(
                    f"row {row}: field {_shown(column)} cannot be sent as JSON ({exc})"
                ) from None
        raise RequestError(f"row {row} cannot be sent as JSON ({whole})") from None


def _shown(name: str) -> str:
    """A name for a message: its repr (escapes what is no text), cut when long."""
    text = repr(name)
    return text if len(text) <= 60 else f"{text[:57]}..."


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


async def encode_pushed(
    source: Source, messages: Sequence[tuple[bytes | None, bytes]]
) -> list[tuple[bytes | None, bytes]]:
    """`push_messages`' JSON events written in the source's format (unchanged for a
    JSON source): a RequestError naming the first row that does not fit its schema,
    StoreUnavailable when its schema registry cannot be reached."""
    if source.format is None:
        return list(messages)
    from feature_service.formats.schema_registry import RegistryRefused, RegistryUnavailable
    from feature_service.stream.event_encoder import EventEncoder

    try:
        values = await EventEncoder(source).encode_json([value for _, value in messages])
    except RegistryUnavailable as exc:
        raise StoreUnavailable(str(exc)) from None
    except (RegistryRefused, CodecError) as exc:
        raise RequestError(f"source {source.name!r}: {exc}") from None
    out = []
    for row, ((key, _), value) in enumerate(zip(messages, values, strict=True)):
        if isinstance(value, CodecError):
            raise RequestError(f"row {row}: {value}")
        out.append((key, value))
    return out


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
