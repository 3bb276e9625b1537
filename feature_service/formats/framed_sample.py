"""Messages of a topic in the Confluent wire format, as JSON objects, for `generate --topic`.

There are no definitions yet when a sample is read to propose them, so each message is
read with the very schema it was written with (its registry id; Avro, Protobuf or JSON
Schema alike), and written out as a JSON object of its fields (times as epoch seconds);
the sampler then treats it like any JSON event. A message that is not in the wire
format, or whose id the registry does not have, becomes None (skipped, and counted).

>>> framed = b"\\x00\\x00\\x00\\x00\\x01\\x04c1"
>>> as_json_objects([framed], "http://127.0.0.1:8081")  # doctest: +SKIP
[b'{"customer_id":"c1"}']
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson

from feature_service.formats import CodecError, EventCodec, codec_from_text
from feature_service.formats.schema_registry import registry_at
from feature_service.formats.wire import FrameError, unframe, unframe_indexes

_KINDS = {"AVRO": "avro", "PROTOBUF": "protobuf", "JSON": "jsonschema"}


def as_json_objects(values: Sequence[bytes | None], registry_url: str) -> list[bytes | None]:
    """Each framed message as JSON object bytes; None where it cannot be read."""
    return asyncio.run(_as_json_objects(values, registry_url))


async def _as_json_objects(values: Sequence[bytes | None], registry_url: str) -> list[bytes | None]:
    registry = registry_at(registry_url)
    codecs: dict[tuple[int, tuple[int, ...]], EventCodec | None] = {}
    out: list[bytes | None] = []
    for value in values:
        try:
            schema_id, payload = unframe(value)
            registered = await registry.schema(schema_id)
            if registered is None or registered.schema_type not in _KINDS:
                out.append(None)
                continue
            indexes: tuple[int, ...] = ()
            if registered.schema_type == "PROTOBUF":
                _, indexes, payload = unframe_indexes(value)
            key = (schema_id, indexes)
            if key not in codecs:
                codecs[key] = _codec(_KINDS[registered.schema_type], registered.text, indexes)
            codec = codecs[key]
            if codec is None:
                out.append(None)
                continue
            event: Any = codec.decode(payload)
        except (FrameError, CodecError):
            out.append(None)
            continue
        out.append(event if isinstance(event, bytes) else orjson.dumps(event))
    return out


def _codec(kind: str, text: str, indexes: tuple[int, ...]) -> EventCodec | None:
    try:
        if kind == "protobuf" and indexes not in ((), (0,)):
            from feature_service.formats.protobuf import message_name_at

            return codec_from_text(kind, text, message_name_at(text, indexes))
        return codec_from_text(kind, text)
    except CodecError:
        return None
