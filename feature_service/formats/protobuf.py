"""Protobuf events (Google's protobuf runtime): one message type's fields are the columns.

The schema is a `.proto` file, compiled when definitions load by protoc as shipped in
grpcio-tools (no protoc on PATH needed), or a descriptor set (`protoc
--descriptor_set_out --include_imports`, `.desc`/`.pb`/`.binpb`). The message is the
source's `message:` (its name, with or without the package), by default the first of
the file.

Types: `string` -> string, the integer types -> int, `float`/`double` -> float,
`bool` -> bool, `google.protobuf.Timestamp` -> timestamp (epoch seconds). A field with
presence (`optional`, a message) that is not set is null; a proto3 scalar without
`optional` reads as its default (0, "", false), as Protobuf has it. Repeated fields,
maps, enums, bytes and other messages cannot be columns.

Evolution is Protobuf's own: fields are matched by number, so an added field is its
default in older events and a removed one is skipped. A registry version that gives a
field number of the source's message another type cannot be read as the source's.

>>> codec = ProtobufCodec.from_proto_text(
...     'syntax = "proto3"; message Tx { string customer_id = 1; double amount = 2; }')
>>> codec.column_types, codec.decode(codec.encode({"customer_id": "c1", "amount": 2.5}))
({'customer_id': 'string', 'amount': 'float'}, {'customer_id': 'c1', 'amount': 2.5})
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from feature_service.formats.codec import CodecError, EventCodec

TIMESTAMP = "google.protobuf.Timestamp"
_T = FieldDescriptor
_KINDS = {
    _T.TYPE_STRING: "string",
    _T.TYPE_DOUBLE: "float",
    _T.TYPE_FLOAT: "float",
    _T.TYPE_BOOL: "bool",
    **{
        t: "int"
        for t in (
            _T.TYPE_INT32, _T.TYPE_INT64, _T.TYPE_SINT32, _T.TYPE_SINT64, _T.TYPE_UINT32,
            _T.TYPE_UINT64, _T.TYPE_FIXED32, _T.TYPE_FIXED64, _T.TYPE_SFIXED32,
            _T.TYPE_SFIXED64,
        )
    },
}  # fmt: skip
# Integer types that share the varint wire encoding: a change among them still reads.
_VARINTS = {_T.TYPE_INT32, _T.TYPE_INT64, _T.TYPE_UINT32, _T.TYPE_UINT64, _T.TYPE_BOOL}
PROTO_SUFFIXES = (".proto",)
DESCRIPTOR_SET_SUFFIXES = (".desc", ".pb", ".binpb", ".protoset")


class ProtobufCodec(EventCodec):
    """One message type of a compiled Protobuf file."""

    kind = "protobuf"
    registry_type = "PROTOBUF"

    def __init__(
        self, files: descriptor_pb2.FileDescriptorSet, message: str | None, text: str | None
    ) -> None:
        self._text = text
        self.descriptor, self.message_indexes = _find_message(files, message)
        self._cls: type[Message] = message_factory.GetMessageClass(self.descriptor)
        self.column_types, self.unsupported = _columns(self.descriptor)
        fields = self.descriptor.fields_by_name
        self._plain = [n for n in self.column_types if not fields[n].has_presence]
        self._optional = [
            n for n, k in self.column_types.items() if fields[n].has_presence and k != "timestamp"
        ]
        self._times = [n for n, k in self.column_types.items() if k == "timestamp"]

    @classmethod
    def from_file(cls, path: Path, message: str | None) -> ProtobufCodec:
        """From a `.proto` file (compiled) or a descriptor set."""
        if path.suffix in DESCRIPTOR_SET_SUFFIXES:
            try:
                files = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
            except DecodeError as exc:
                raise CodecError(f"not a Protobuf descriptor set ({exc})") from None
            return cls(files, message, None)
        text = path.read_text(encoding="utf-8")
        return cls(_compile(path.name, text), message, text)

    @classmethod
    def from_proto_text(cls, text: str, message: str | None = None) -> ProtobufCodec:
        return cls(_compile("schema.proto", text), message, text)

    @property
    def schema_text(self) -> str:
        if self._text is None:
            raise CodecError(
                "a schema given as a descriptor set cannot be registered: give the .proto file"
            )
        return self._text

    def writer(self, text: str, indexes: tuple[int, ...] | None = None) -> None:
        """Check that a registry version's message reads as the source's (by field
        number, compatible types); decoding then uses the source's own message."""
        files = _compile("writer.proto", text)
        written = _message_at(files, indexes or (0,))
        for field in self.descriptor.fields:
            other = written.fields_by_number.get(field.number)
            if other is None or _compatible(field, other):
                continue
            raise CodecError(
                f"field {field.name!r} (number {field.number}) of the source's "
                f"{self.descriptor.full_name} is {other.name!r} of another type in the "
                f"writer's schema"
            )
        return None

    def decode(self, payload: bytes, writer: Any | None = None) -> dict[str, Any]:
        try:
            message = self._cls.FromString(payload)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise CodecError(f"not decodable as Protobuf {self.descriptor.name}: {exc}") from None
        event = {name: getattr(message, name) for name in self._plain}
        for name in self._optional:
            event[name] = getattr(message, name) if message.HasField(name) else None
        for name in self._times:
            if message.HasField(name):
                stamp = getattr(message, name)
                event[name] = stamp.seconds + stamp.nanos / 1e9
            else:
                event[name] = None
        return event

    def encode(self, event: Mapping[str, Any]) -> bytes:
        message = self._cls()
        for name, value in event.items():
            if value is None or name not in self.column_types:
                continue
            try:
                if name in self._times:
                    whole = int(value // 1)
                    stamp = getattr(message, name)
                    stamp.seconds, stamp.nanos = whole, round((value - whole) * 1e9)
                else:
                    setattr(message, name, value)
            except (TypeError, ValueError) as exc:
                raise CodecError(
                    f"field {name!r} does not fit the Protobuf schema: {exc}"
                ) from None
        return message.SerializeToString()


def message_name_at(text: str, indexes: tuple[int, ...]) -> str:
    """The full name of the message at `indexes` (the wire format's) of a `.proto` text."""
    return _message_at(_compile("schema.proto", text), indexes).full_name


def _compile(name: str, text: str) -> descriptor_pb2.FileDescriptorSet:
    """A `.proto` text compiled with grpcio-tools' protoc (well-known types importable)."""
    include = resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / name).write_text(text, encoding="utf-8")
        out = Path(tmp) / "files.pb"
        done = subprocess.run(
            [
                sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp}", f"-I{include}",
                f"--descriptor_set_out={out}", "--include_imports", name,
            ],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            problem = (done.stderr or done.stdout).strip().splitlines()
            raise CodecError(
                "the .proto does not compile: " + (problem[0] if problem else "protoc failed")
            )
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _pool(files: descriptor_pb2.FileDescriptorSet) -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:  # --include_imports orders dependencies first
        pool.Add(file)
    return pool


def _find_message(
    files: descriptor_pb2.FileDescriptorSet, name: str | None
) -> tuple[Descriptor, tuple[int, ...]]:
    if not files.file:
        raise CodecError("the Protobuf schema has no file")
    main = files.file[-1]
    if not main.message_type:
        raise CodecError(f"{main.name} declares no message")
    if name is None:
        index = 0
    else:
        short = name.removeprefix(main.package + ".") if main.package else name
        names = [m.name for m in main.message_type]
        if short not in names:
            raise CodecError(f"no message {name!r} in {main.name} (it has {', '.join(names)})")
        index = names.index(short)
    return _message_at(files, (index,)), (index,)


def _message_at(files: descriptor_pb2.FileDescriptorSet, indexes: tuple[int, ...]) -> Descriptor:
    main = files.file[-1]
    pool = _pool(files)
    try:
        proto = main.message_type[indexes[0]]
        path = [proto.name]
        for i in indexes[1:]:
            proto = proto.nested_type[i]
            path.append(proto.name)
    except IndexError:
        raise CodecError(f"no message at index {list(indexes)} of the schema") from None
    prefix = f"{main.package}." if main.package else ""
    return pool.FindMessageTypeByName(prefix + ".".join(path))


def _columns(message: Descriptor) -> tuple[dict[str, str], dict[str, str]]:
    kinds: dict[str, str] = {}
    unsupported: dict[str, str] = {}
    for field in message.fields:
        if field.is_repeated:
            unsupported[field.name] = "a repeated field cannot be a column"
        elif field.type == _T.TYPE_MESSAGE:
            if field.message_type.full_name == TIMESTAMP:
                kinds[field.name] = "timestamp"
            else:
                unsupported[field.name] = (
                    f"message {field.message_type.full_name} cannot be a column"
                )
        elif field.type in _KINDS:
            kinds[field.name] = _KINDS[field.type]
        else:
            unsupported[field.name] = "this Protobuf type cannot be a column"
    return kinds, unsupported


def _compatible(reader: FieldDescriptor, writer: FieldDescriptor) -> bool:
    if reader.type == writer.type:
        return reader.type != _T.TYPE_MESSAGE or (
            reader.message_type.full_name == writer.message_type.full_name
        )
    return reader.type in _VARINTS and writer.type in _VARINTS
