"""JSON Schema events: JSON payloads, typed by an object schema's `properties`.

Types: `string` -> string (`format: date-time` -> timestamp), `integer` -> int,
`number` -> float, `boolean` -> bool; `["<type>", "null"]` is the same, nullable.
Payloads are the JSON text itself (after the wire-format frame, with a registry), so
they go through the worker's JSON parser, which checks every column's type; keywords
beyond the types (`minimum`, `pattern`, `enum`, ...) are not enforced.

>>> codec = JsonSchemaCodec('{"type": "object", "properties": {'
...     '"customer_id": {"type": "string"}, "ts": {"type": "string", "format": "date-time"}}}')
>>> codec.column_types
{'customer_id': 'string', 'ts': 'timestamp'}
>>> codec.encode({"customer_id": "c1", "ts": 0.5})
b'{"customer_id":"c1","ts":"1970-01-01T00:00:00.500000+00:00"}'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from feature_service.formats.codec import CodecError, EventCodec

_KINDS = {"string": "string", "integer": "int", "number": "float", "boolean": "bool"}


class JsonSchemaCodec(EventCodec):
    """An object JSON Schema (a `.json` file, or a registry version)."""

    kind = "jsonschema"
    registry_type = "JSON"

    def __init__(self, text: str) -> None:
        self._text = text
        try:
            schema = json.loads(text)
        except ValueError as exc:
            raise CodecError(f"not a JSON Schema (invalid JSON: {exc})") from None
        properties = schema.get("properties") if isinstance(schema, dict) else None
        if not isinstance(properties, dict):
            raise CodecError("the JSON Schema of events must be an object with `properties`")
        self.column_types = {}
        self.unsupported = {}
        for name, spec in properties.items():
            kind = _kind(spec)
            if kind is None:
                self.unsupported[name] = "only string, integer, number and boolean are columns"
            else:
                self.column_types[name] = kind
        self._times = [n for n, k in self.column_types.items() if k == "timestamp"]

    @property
    def schema_text(self) -> str:
        return self._text

    def writer(self, text: str, indexes: tuple[int, ...] | None = None) -> None:
        JsonSchemaCodec(text)  # readable; the JSON parser checks each event's types
        return None

    def decode(self, payload: bytes, writer: Any | None = None) -> bytes:
        return payload

    def encode(self, event: Mapping[str, Any]) -> bytes:
        document = dict(event)
        for name in self._times:
            value = document.get(name)
            if value is not None:
                document[name] = datetime.fromtimestamp(value, UTC).isoformat()
        return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


def _kind(spec: Any) -> str | None:
    if not isinstance(spec, dict):
        return None
    types = spec.get("type")
    options = [t for t in (types if isinstance(types, list) else [types]) if t != "null"]
    if len(options) != 1:
        return None
    if options[0] == "string" and spec.get("format") == "date-time":
        return "timestamp"
    return _KINDS.get(str(options[0]))
