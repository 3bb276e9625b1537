"""What every event format does: its columns, reading a payload, writing one.

A codec holds the source's own schema (the reader schema). Payloads written with
another version of it (a registry id) are read through a `writer` the codec makes from
that version's text; a version that cannot be read as the source's schema is a
`CodecError` naming why, and so is a payload that cannot be decoded. The decoded
payload is a plain dict of the event's fields (times as epoch seconds), or for JSON
Schema the JSON bytes themselves, which then go through the one JSON parser
(`events.parsing`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar


class CodecError(ValueError):
    """A schema or a payload that cannot be read, and why (one line)."""


class EventCodec(ABC):
    """One source's schema in one format."""

    kind: ClassVar[str]
    registry_type: ClassVar[str]  # the registry's schemaType: AVRO, PROTOBUF, JSON
    column_types: dict[str, str]
    """The fields that can be columns, by column type (`string`, `int`, ...)."""
    unsupported: dict[str, str]
    """The fields that cannot be columns, and why."""
    message_indexes: tuple[int, ...] | None = None
    """Protobuf: where the message is in its file (the wire format carries it)."""

    @property
    @abstractmethod
    def schema_text(self) -> str:
        """The schema as a registry stores it (what is registered for producing)."""

    @abstractmethod
    def writer(self, text: str, indexes: tuple[int, ...] | None = None) -> Any:
        """What `decode` needs for payloads written with the schema `text` (a registry
        version); CodecError if they cannot be read as this codec's schema."""

    @abstractmethod
    def decode(self, payload: bytes, writer: Any | None = None) -> dict[str, Any] | bytes:
        """One payload as a dict of fields (or JSON bytes); CodecError if undecodable."""

    @abstractmethod
    def encode(self, event: Mapping[str, Any]) -> bytes:
        """One event (column -> value, times as epoch seconds, None for null) as a
        payload; CodecError naming the field that does not fit."""
