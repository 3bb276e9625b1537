"""Avro events (fastavro): a record schema's top-level fields are the columns.

Types: `string` and `enum` -> string, `int`/`long` -> int, `float`/`double` -> float,
`boolean` -> bool, `long` with logical type `timestamp-millis`/`-micros`/`-nanos` (or
`local-timestamp-*`) -> timestamp (read as epoch seconds); a union with `null` is the
same type, nullable. Other fields (bytes, arrays, maps, nested records) are read and
ignored; they cannot be columns.

Evolution is Avro's own schema resolution (fastavro, writer schema -> the source's
reader schema): a field added with a default reads as the default from older events,
a field the reader no longer has is skipped.

>>> codec = AvroCodec('{"type": "record", "name": "Tx", "fields": ['
...     '{"name": "customer_id", "type": "string"},'
...     '{"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}')
>>> codec.column_types
{'customer_id': 'string', 'ts': 'timestamp'}
>>> codec.decode(codec.encode({"customer_id": "c1", "ts": 1.5}))
{'customer_id': 'c1', 'ts': 1.5}
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fastavro
from fastavro.read import SchemaResolutionError

from feature_service.formats.codec import CodecError, EventCodec

_TIME_SCALES = {"millis": 1_000, "micros": 1_000_000, "nanos": 1_000_000_000}
_KINDS = {
    "string": "string",
    "enum": "string",
    "int": "int",
    "long": "int",
    "float": "float",
    "double": "float",
    "boolean": "bool",
}


@dataclass(frozen=True)
class _Writer:
    parsed: Any
    scales: dict[str, int]
    same: bool  # the reader's own schema: no resolution needed


class AvroCodec(EventCodec):
    """An Avro record schema (the text of an `.avsc`, or a registry version)."""

    kind = "avro"
    registry_type = "AVRO"

    def __init__(self, text: str) -> None:
        self._text = text
        self._schema = _schema_json(text)
        self._parsed, self._scales = _parse(self._schema)
        self.column_types, self.unsupported = _columns(self._schema)
        self._reader = _Writer(self._parsed, self._scales, True)

    @property
    def schema_text(self) -> str:
        return self._text

    def writer(self, text: str, indexes: tuple[int, ...] | None = None) -> _Writer:
        schema = _schema_json(text)
        if _canonical(schema) == _canonical(self._schema):
            return self._reader
        parsed, scales = _parse(schema)
        return _Writer(parsed, scales, False)

    def decode(self, payload: bytes, writer: Any | None = None) -> dict[str, Any]:
        use: _Writer = writer or self._reader
        stream = io.BytesIO(payload)
        try:
            if use.same:
                record = fastavro.schemaless_reader(stream, self._parsed, None)
            else:
                record = fastavro.schemaless_reader(stream, use.parsed, self._parsed)
        except SchemaResolutionError as exc:
            raise CodecError(f"the writer's schema cannot be read as the source's: {exc}") from None
        except Exception as exc:  # fastavro raises many kinds on bad bytes
            raise CodecError(f"not decodable as Avro: {_why(exc)}") from None
        left = len(payload) - stream.tell()
        if left:
            raise CodecError(f"not decodable as Avro: {left} bytes left after the record")
        if not isinstance(record, dict):
            raise CodecError("not decodable as Avro: not a record")
        for name, scale in use.scales.items():
            value = record.get(name)
            if value is not None:
                record[name] = value / scale
        return record

    def encode(self, event: Mapping[str, Any]) -> bytes:
        record = dict(event)
        for name, scale in self._scales.items():
            value = record.get(name)
            if value is not None:
                record[name] = round(value * scale)
        out = io.BytesIO()
        try:
            fastavro.schemaless_writer(out, self._parsed, record)
        except Exception as exc:
            raise CodecError(f"does not fit the Avro schema: {_why(exc)}") from None
        return out.getvalue()


def _schema_json(text: str) -> dict[str, Any]:
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise CodecError(f"not an Avro schema (invalid JSON: {exc})") from None
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise CodecError("the Avro schema of events must be a record")
    if not isinstance(schema.get("fields"), list):
        raise CodecError("the Avro record has no `fields` list")
    return schema


def _parse(schema: dict[str, Any]) -> tuple[Any, dict[str, int]]:
    """fastavro's parsed schema, with top-level time fields read as plain longs (then
    scaled to epoch seconds by the codec: cheaper than datetime objects)."""
    plain = copy.deepcopy(schema)
    scales: dict[str, int] = {}
    for field in plain["fields"]:
        if not isinstance(field, dict):
            continue
        members = field.get("type")
        for i, member in enumerate(members if isinstance(members, list) else [members]):
            scale = _time_scale(member)
            if scale is None:
                continue
            scales[str(field.get("name"))] = scale
            if isinstance(members, list):
                members[i] = "long"
            else:
                field["type"] = "long"
    try:
        return fastavro.parse_schema(plain), scales
    except Exception as exc:
        raise CodecError(f"not a valid Avro schema: {_why(exc)}") from None


def _time_scale(member: Any) -> int | None:
    if not isinstance(member, dict) or member.get("type") != "long":
        return None
    logical = str(member.get("logicalType", ""))
    if logical.removeprefix("local-").startswith("timestamp-"):
        return _TIME_SCALES.get(logical.rsplit("-", 1)[1])
    return None


def _columns(schema: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    kinds: dict[str, str] = {}
    unsupported: dict[str, str] = {}
    for field in schema["fields"]:
        name = str(field.get("name"))
        members = field.get("type")
        options = members if isinstance(members, list) else [members]
        typed = [m for m in options if m != "null"]
        if len(typed) != 1:
            unsupported[name] = "a union of several types"
            continue
        member = typed[0]
        if _time_scale(member) is not None:
            kinds[name] = "timestamp"
            continue
        base = member.get("type") if isinstance(member, dict) else member
        kind = _KINDS.get(str(base))
        if kind is None:
            unsupported[name] = f"Avro type {base!r} cannot be a column"
        else:
            kinds[name] = kind
    return kinds, unsupported


def _canonical(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def _why(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
