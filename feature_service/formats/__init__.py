"""Event formats beside JSON: Avro, Protobuf and JSON Schema, inline or from a registry.

A source declares `format:` with its schema as a file (`schema_file:`, read as bare
payloads) or in a Confluent-API schema registry (`schema_registry: {url, subject}`,
messages in the Confluent wire format, `formats.wire`). `SourceFormat` is that
declaration resolved; `codec_of` turns it into the one codec (`formats.codec`) every
reader and writer of the source uses: the worker decodes with it
(`stream.source_decoder`), `/push`, `produce` and the SDK encode with it.

Needs the `formats` extra (`pip install 'feature-service[formats]'`).

>>> fmt = SourceFormat("avro", schema_file="definitions/schemas/transactions.avsc")
>>> sorted(codec_of(fmt).column_types)  # doctest: +SKIP
['amount', 'customer_id', 'ts']
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from feature_service.formats.codec import CodecError, EventCodec

FORMATS = ("json", "avro", "protobuf", "jsonschema")
REGISTRY_URL_VARIABLE = "FS_SCHEMA_REGISTRY_URL"
"""The registry of sources whose `schema_registry` gives no `url`."""


@dataclass(frozen=True)
class SourceFormat:
    """How a source's events are written: a format, and where its schema is."""

    kind: str  # avro, protobuf or jsonschema (json sources have no SourceFormat)
    schema_file: str | None = None  # absolute, or relative to the working directory
    registry_url: str | None = None
    subject: str | None = None
    message: str | None = None  # Protobuf: the message type

    @property
    def framed(self) -> bool:
        """Whether messages carry the Confluent wire format frame (a registry's)."""
        return self.subject is not None

    def registry(self) -> str | None:
        """The registry's URL (None: bare payloads); CodecError naming the problem
        when the source has a subject but no URL is known."""
        if self.subject is not None and self.registry_url is None:
            raise CodecError(
                f"subject {self.subject!r}: the source's schema_registry has no url, and "
                f"{REGISTRY_URL_VARIABLE} is not set"
            )
        return self.registry_url

    @property
    def described(self) -> str:
        """One line for `status`, the UI and the registry listing."""
        where = (
            f"registry {self.registry_url} subject {self.subject}"
            if self.registry_url
            else f"schema {Path(self.schema_file or '').name}"
        )
        return f"{self.kind} ({where})"


def codec_of(fmt: SourceFormat) -> EventCodec:
    """The codec of a source's format, loaded once (the schema file read and compiled,
    again when the file changes; or the subject's newest version fetched); CodecError
    naming the problem."""
    try:
        changed = Path(fmt.schema_file).stat().st_mtime_ns if fmt.schema_file else None
    except OSError:
        changed = None
    return _codec(fmt, changed)


@lru_cache(maxsize=256)
def _codec(fmt: SourceFormat, changed: int | None) -> EventCodec:
    if fmt.schema_file is not None:
        path = Path(fmt.schema_file)
        try:
            if fmt.kind == "protobuf":
                from feature_service.formats.protobuf import ProtobufCodec

                return ProtobufCodec.from_file(path, fmt.message)
            return codec_from_text(fmt.kind, path.read_text(encoding="utf-8"), fmt.message)
        except OSError as exc:
            raise CodecError(f"cannot read {path} ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise CodecError(f"{path} is not UTF-8 text") from None
    assert fmt.registry_url is not None and fmt.subject is not None
    from feature_service.formats.schema_registry import (
        RegistryRefused,
        RegistryUnavailable,
        SchemaRegistry,
    )

    try:
        latest = SchemaRegistry(fmt.registry_url).latest(fmt.subject)
    except (RegistryUnavailable, RegistryRefused) as exc:
        raise CodecError(str(exc)) from None
    return codec_from_text(fmt.kind, latest.text, fmt.message)


def codec_from_text(kind: str, text: str, message: str | None = None) -> EventCodec:
    """A codec from a schema's text (a file's, or a registry version's)."""
    if kind == "avro":
        from feature_service.formats.avro import AvroCodec

        return AvroCodec(text)
    if kind == "protobuf":
        from feature_service.formats.protobuf import ProtobufCodec

        return ProtobufCodec.from_proto_text(text, message)
    if kind == "jsonschema":
        from feature_service.formats.json_schema import JsonSchemaCodec

        return JsonSchemaCodec(text)
    raise CodecError(f"unknown format {kind!r}; use one of {', '.join(FORMATS)}")


def schema_mismatches(codec: EventCodec, declared: dict[str, str]) -> list[tuple[str, str]]:
    """(column, problem) for each column of a declared `schema:` that the format's
    schema does not have with that type. A `timestamp` column may be any number or
    time field (epoch seconds); a `float` column may be an int field.

    >>> from feature_service.formats.json_schema import JsonSchemaCodec
    >>> codec = JsonSchemaCodec('{"properties": {"a": {"type": "integer"}}}')
    >>> schema_mismatches(codec, {"a": "string", "b": "int"})
    [('a', 'is int in the schema, not string'), ('b', 'is not in the schema')]
    """
    problems = []
    for name, kind in declared.items():
        actual = codec.column_types.get(name)
        if actual is None:
            why = codec.unsupported.get(name)
            problems.append((name, f"cannot be a column: {why}" if why else "is not in the schema"))
        elif actual != kind and not (
            (kind == "timestamp" and actual in ("int", "float"))
            or (kind == "float" and actual == "int")
        ):
            problems.append((name, f"is {actual} in the schema, not {kind}"))
    return problems


__all__ = [
    "FORMATS",
    "REGISTRY_URL_VARIABLE",
    "CodecError",
    "EventCodec",
    "SourceFormat",
    "codec_from_text",
    "codec_of",
    "schema_mismatches",
]
