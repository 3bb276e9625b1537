"""The Confluent wire format: the frame around an Avro, Protobuf or JSON payload.

A framed message is a magic byte 0, the schema id as a 4-byte big-endian integer, then
(Protobuf only) the message indexes that locate the message type in its schema file,
then the payload. The indexes are a zigzag varint count followed by that many zigzag
varints; the common case, the first message of the file, is the single byte 0. This
module reads and writes the frame only; the payloads are decoded by fastavro, protobuf
or the JSON parser.

>>> framed = frame(7, b"payload")
>>> framed[:5], unframe(framed)
(b'\\x00\\x00\\x00\\x00\\x07', (7, b'payload'))
>>> unframe_indexes(frame(7, b"p", indexes=(1, 0)))
(7, (1, 0), b'p')
"""

from __future__ import annotations

import struct

MAGIC = 0
HEADER = struct.Struct(">bI")


class FrameError(ValueError):
    """A message that is not in the Confluent wire format."""


def frame(schema_id: int, payload: bytes, indexes: tuple[int, ...] | None = None) -> bytes:
    """`payload` framed with `schema_id` (and Protobuf message `indexes`, if given)."""
    head = HEADER.pack(MAGIC, schema_id)
    if indexes is None:
        return head + payload
    if indexes == (0,):
        return head + b"\x00" + payload
    return (
        head
        + _varint(_zigzag(len(indexes)))
        + b"".join(_varint(_zigzag(i)) for i in indexes)
        + payload
    )


def unframe(value: bytes | None) -> tuple[int, bytes]:
    """(schema id, payload) of a framed message; FrameError if it is not one."""
    if value is None:
        raise FrameError("empty message (no value)")
    if len(value) < HEADER.size or value[0] != MAGIC:
        raise FrameError(
            "not in the Confluent wire format (no magic byte 0 and schema id before the payload)"
        )
    return HEADER.unpack_from(value)[1], value[HEADER.size :]


def unframe_indexes(value: bytes | None) -> tuple[int, tuple[int, ...], bytes]:
    """(schema id, message indexes, payload) of a framed Protobuf message."""
    schema_id, rest = unframe(value)
    count, at = _read_varint(rest, 0)
    count = _unzigzag(count)
    if count == 0:
        return schema_id, (0,), rest[at:]
    if not 0 < count <= 100:
        raise FrameError(f"bad Protobuf message index count {count}")
    indexes = []
    for _ in range(count):
        index, at = _read_varint(rest, at)
        indexes.append(_unzigzag(index))
    return schema_id, tuple(indexes), rest[at:]


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _unzigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise FrameError("truncated Protobuf message indexes")
        byte = data[at]
        at += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, at
        shift += 7
