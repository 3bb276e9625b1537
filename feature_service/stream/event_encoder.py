"""Events written in their source's format, for `/push`, `produce` and the SDK.

JSON events are checked by the worker's own parser (`events.parsing.parse_records`,
schema rules only), then each accepted event is written by the source's codec
(`formats.codec_of`) from its parsed values (times as epoch seconds): bare, or in the
Confluent wire format under the id of the source's schema in its registry subject
(registered on first use if the subject does not hold it yet; the registry checks
compatibility). So a pushed event reaches the worker as the same values it would have
had as JSON.

>>> encoder = EventEncoder(registry.sources["payments"])  # doctest: +SKIP
>>> await encoder.encode_json([b'{"customer_id": "c1", "amount": 2, "ts": 10}'])  # doctest: +SKIP
[b'\\x00\\x00\\x00\\x00\\x01\\x04c1...']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from feature_service.definitions import Source
from feature_service.events.parsing import ParsedBatch, parse_records
from feature_service.formats import CodecError, EventCodec, codec_of
from feature_service.formats.schema_registry import registry_at
from feature_service.formats.wire import frame


class EventEncoder:
    """Writes events of one source (which has a `format`)."""

    def __init__(self, source: Source) -> None:
        if source.format is None:
            raise ValueError(f"source {source.name!r} is JSON: nothing to encode")
        self.source = source
        self.format = source.format
        self.codec: EventCodec = codec_of(source.format)

    async def schema_id(self) -> int | None:
        """The registry id events are framed with (None: bare payloads)."""
        fmt = self.format
        url = fmt.registry()
        if url is None or fmt.subject is None:
            return None
        registry = registry_at(url)
        return await registry.register(
            fmt.subject, self.codec.registry_type, self.codec.schema_text
        )

    async def encode_json(self, values: Sequence[bytes]) -> list[bytes | CodecError]:
        """Each JSON event written in the format; for an event the parser refuses, or
        that does not fit the schema, the CodecError saying why."""
        batch = parse_records(self.source, list(enumerate(values)))
        out: list[bytes | CodecError] = [
            CodecError(r.reason) for r in sorted(batch.rejected, key=lambda r: r.offset)
        ]
        if not len(batch):
            return self._in_order(batch, out, [])
        schema_id = await self.schema_id()
        written: list[bytes | CodecError] = []
        for event in _events(self.source, batch):
            try:
                payload = self.codec.encode(event)
            except CodecError as exc:
                written.append(exc)
                continue
            if schema_id is not None:
                payload = frame(schema_id, payload, self.codec.message_indexes)
            written.append(payload)
        return self._in_order(batch, out, written)

    @staticmethod
    def _in_order(
        batch: ParsedBatch, refused: list[bytes | CodecError], written: list[bytes | CodecError]
    ) -> list[bytes | CodecError]:
        at = {int(o): w for o, w in zip(batch.offsets.tolist(), written, strict=True)}
        reasons = iter(refused)
        return [at[i] if i in at else next(reasons) for i in range(len(at) + len(refused))]


def _events(source: Source, batch: ParsedBatch) -> list[dict[str, Any]]:
    """The parsed events as plain values: floats None for null (NaN), times as epoch
    seconds, the timestamp field from the parsed event times."""
    columns: dict[str, list[Any]] = {}
    for name, kind in source.schema.items():
        values = batch.columns[name]
        if values.dtype.kind == "f":
            columns[name] = [None if math.isnan(v) else v for v in values.tolist()]
        else:
            columns[name] = [v.item() if isinstance(v, np.generic) else v for v in values]
        if kind == "int":
            columns[name] = [None if v is None else int(v) for v in columns[name]]
    columns[source.timestamp_field] = batch.ts.tolist()
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]
