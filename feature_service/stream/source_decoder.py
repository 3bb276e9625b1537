"""Records of an Avro, Protobuf or JSON Schema source turned into events for the one parser.

Each record's payload is decoded by the source's codec (`formats.codec_of`); with a
registry, its Confluent wire-format frame names the writer's schema id, whose schema is
fetched once and kept (`formats.schema_registry`), and the payload is read through it
into the source's own (reader) schema. The decoded events then go through
`plan.SourcePlan.parse` like JSON events, so every rule (types, times, keys,
`max_future`) is the same whatever the format.

A record that cannot be decoded goes to the dead-letter topic with the reason, its raw
bytes kept: no frame, a schema id the registry does not have, a version that cannot be
read as the source's schema, bytes that are not a payload of it. A registry that
cannot be reached raises `RegistryUnavailable`: the batch is retried, never dropped.

>>> decoder = SourceDecoder(registry.sources["payments"])  # doctest: +SKIP
>>> batch = await decoder.parse(plan, [(0, b"\\x00\\x00\\x00\\x00\\x01...")])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

from feature_service.definitions import Source
from feature_service.events.parsing import ParsedBatch, Rejection
from feature_service.formats import CodecError, EventCodec, codec_of
from feature_service.formats.schema_registry import SchemaRegistry, registry_at
from feature_service.formats.wire import FrameError, unframe, unframe_indexes
from feature_service.plan import SourcePlan

Decoded = bytes | dict[str, Any]


class SourceDecoder:
    """Decodes the records of one source (which has a `format`)."""

    def __init__(self, source: Source, registry: SchemaRegistry | None = None) -> None:
        fmt = source.format
        if fmt is None:
            raise ValueError(f"source {source.name!r} is JSON: nothing to decode")
        self.source = source
        self.codec: EventCodec = codec_of(fmt)
        self.registry = registry
        url = fmt.registry()
        if self.registry is None and url is not None:
            self.registry = registry_at(url)
        self._writers: dict[tuple[int, tuple[int, ...] | None], Any] = {}

    async def parse(
        self,
        plan: SourcePlan,
        records: Sequence[tuple[int, bytes | None]],
        written_at: Sequence[float | None] | None = None,
    ) -> ParsedBatch:
        """Decode, then `plan.parse`; the refused records keep their raw bytes."""
        events, times, refused = await self.decode(records, written_at)
        batch = plan.parse(cast(Any, events), times)
        raw = dict(records)
        rejected = [replace(r, value=raw.get(r.offset)) for r in batch.rejected]
        batch.rejected = sorted([*rejected, *refused], key=lambda r: r.offset)
        return batch

    async def decode(
        self,
        records: Sequence[tuple[int, bytes | None]],
        written_at: Sequence[float | None] | None = None,
    ) -> tuple[list[tuple[int, Decoded]], list[float | None] | None, list[Rejection]]:
        """(decoded records, their `written_at`, the refused ones with the reason)."""
        framed = await self._frames(records) if self.registry is not None else None
        events: list[tuple[int, Decoded]] = []
        times: list[float | None] | None = None if written_at is None else []
        refused: list[Rejection] = []
        decode = self.codec.decode
        for i, (offset, value) in enumerate(records):
            try:
                if framed is not None:
                    frame = framed[i]
                    if isinstance(frame, CodecError):
                        raise frame
                    writer, payload = frame
                    event = decode(payload, writer)
                elif value is None:
                    raise CodecError("empty message (no value)")
                else:
                    event = decode(value)
            except CodecError as exc:
                refused.append(Rejection(offset, str(exc), value))
                continue
            events.append((offset, event))
            if times is not None and written_at is not None:
                times.append(written_at[i])
        return events, times, refused

    async def _frames(
        self, records: Sequence[tuple[int, bytes | None]]
    ) -> list[tuple[Any, bytes] | CodecError]:
        """Each record's writer and payload from its frame, or why it has none."""
        assert self.registry is not None
        protobuf = self.codec.message_indexes is not None
        frames: list[tuple[int, tuple[int, ...] | None, bytes] | CodecError] = []
        for _, value in records:
            try:
                if protobuf:
                    frames.append(unframe_indexes(value))
                else:
                    schema_id, payload = unframe(value)
                    frames.append((schema_id, None, payload))
            except FrameError as exc:
                frames.append(CodecError(str(exc)))
        out: list[tuple[Any, bytes] | CodecError] = []
        for frame in frames:
            if isinstance(frame, CodecError):
                out.append(frame)
                continue
            schema_id, indexes, payload = frame
            writer = self._writers.get((schema_id, indexes))
            if writer is None:
                writer = self._writers[(schema_id, indexes)] = await self._writer(
                    schema_id, indexes
                )
            out.append(writer if isinstance(writer, CodecError) else (writer, payload))
        return out

    async def _writer(self, schema_id: int, indexes: tuple[int, ...] | None) -> Any:
        """The codec's writer for a schema id, or the CodecError every record written
        with it is refused with. RegistryUnavailable propagates (retry the batch)."""
        assert self.registry is not None
        registered = await self.registry.schema(schema_id)
        if registered is None:
            return CodecError(
                f"unknown schema id {schema_id}: the registry {self.registry.url} does not have it"
            )
        if registered.schema_type != self.codec.registry_type:
            return CodecError(
                f"schema id {schema_id} is a {registered.schema_type} schema, not "
                f"{self.codec.registry_type}"
            )
        try:
            writer = self.codec.writer(registered.text, indexes)
        except CodecError as exc:
            return CodecError(f"schema id {schema_id} cannot be read as the source's schema: {exc}")
        return _NO_WRITER if writer is None else writer


class _NoWriter:
    """A writer version checked and found readable, whose codec needs nothing of it."""


_NO_WRITER = _NoWriter()
