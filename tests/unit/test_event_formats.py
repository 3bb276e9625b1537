"""Avro, Protobuf and JSON Schema sources without a broker: definitions, codecs, the
wire format, and decoded events through the one parser."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from feature_service.definitions import DefinitionError, load_definitions
from feature_service.events.parsing import parse_records
from feature_service.formats import CodecError, codec_from_text
from feature_service.formats.avro import AvroCodec
from feature_service.formats.protobuf import ProtobufCodec
from feature_service.formats.wire import FrameError, frame, unframe, unframe_indexes
from feature_service.plan import source_plan
from feature_service.stream.event_encoder import EventEncoder
from feature_service.stream.source_decoder import SourceDecoder

AVSC = {
    "type": "record",
    "name": "Transaction",
    "fields": [
        {"name": "customer_id", "type": ["null", "string"]},
        {"name": "amount", "type": ["null", "double"]},
        {"name": "category", "type": "string"},
        {"name": "online", "type": "boolean"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
    ],
}
PROTO = """syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
message Transaction {
  string customer_id = 1;
  optional double amount = 2;
  string category = 3;
  bool online = 4;
  google.protobuf.Timestamp ts = 5;
  repeated string tags = 6;
}
"""
COLUMNS = {
    "customer_id": "string",
    "amount": "float",
    "category": "string",
    "online": "bool",
    "ts": "timestamp",
}
VIEW = """
entities:
  - {name: customer, join_key: customer_id}
feature_views:
  - name: cust
    source: tx
    entity: customer
    features:
      - {name: n_1h, aggregation: count, window: 1h}
      - {name: amount_sum_1h, column: amount, aggregation: sum, window: 1h}
"""
EVENTS = [
    {"customer_id": "c1", "amount": 12.5, "category": "fuel", "online": True,
     "ts": 1_790_000_000.25},
    {"customer_id": "c2", "amount": None, "category": "grocery", "online": False,
     "ts": 1_790_000_060.5},
]  # fmt: skip


def _definitions(tmp_path: Path, source: str, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "defs.yaml").write_text("sources:\n" + source + VIEW)
    return tmp_path / "defs.yaml"


def test_an_avro_source_takes_its_column_types_from_the_avsc(tmp_path: Path) -> None:
    path = _definitions(
        tmp_path,
        "  - {name: tx, topic: tx, timestamp_field: ts, format: avro, schema_file: tx.avsc}\n",
        {"tx.avsc": json.dumps(AVSC)},
    )
    source = load_definitions(path).sources["tx"]
    assert source.schema == COLUMNS  # `tags` (an array) cannot be a column and is left out
    assert source.format is not None and source.format.kind == "avro"


def test_a_declared_schema_is_checked_against_the_avsc_with_file_and_path(
    tmp_path: Path,
) -> None:
    path = _definitions(
        tmp_path,
        "  - name: tx\n    topic: tx\n    timestamp_field: ts\n    format: avro\n"
        "    schema_file: tx.avsc\n"
        "    schema: {customer_id: string, amount: string, tags: string, ts: timestamp}\n",
        {"tx.avsc": json.dumps(AVSC)},
    )
    with pytest.raises(DefinitionError) as refused:
        load_definitions(path)
    messages = [str(issue) for issue in refused.value.issues]
    assert f"{path}: sources[0].schema.amount: 'amount' is float in the schema, not string" in (
        messages
    )
    assert any("sources[0].schema.tags: 'tags' cannot be a column" in m for m in messages)


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({}, "sources[0].schema_file: cannot read"),
        ({"tx.avsc": "{not json"}, "sources[0].schema_file: not an Avro schema"),
        ({"tx.avsc": '{"type": "enum", "name": "E", "symbols": ["A"]}'}, "must be a record"),
    ],
)
def test_a_bad_schema_file_is_refused_at_load(
    tmp_path: Path, files: dict[str, str], problem: str
) -> None:
    path = _definitions(
        tmp_path,
        "  - {name: tx, topic: tx, timestamp_field: ts, format: avro, schema_file: tx.avsc}\n",
        files,
    )
    with pytest.raises(DefinitionError, match=re.escape(problem)):
        load_definitions(path)


def test_a_format_needs_a_schema_and_json_needs_none(tmp_path: Path) -> None:
    path = _definitions(
        tmp_path, "  - {name: tx, topic: tx, timestamp_field: ts, format: protobuf}\n", {}
    )
    with pytest.raises(DefinitionError, match="needs a `schema_file` or a `schema_registry`"):
        load_definitions(path)


def test_a_protobuf_source_compiles_its_proto_and_derives_its_columns(tmp_path: Path) -> None:
    path = _definitions(
        tmp_path,
        "  - {name: tx, topic: tx, timestamp_field: ts, format: protobuf, "
        "schema_file: tx.proto, message: shop.Transaction}\n",
        {"tx.proto": PROTO},
    )
    source = load_definitions(path).sources["tx"]
    assert source.schema == COLUMNS  # `tags` (repeated) cannot be a column


def test_a_proto_that_does_not_compile_is_refused_naming_protoc_s_message(
    tmp_path: Path,
) -> None:
    path = _definitions(
        tmp_path,
        "  - {name: tx, topic: tx, timestamp_field: ts, format: protobuf, schema_file: tx.proto}\n",
        {"tx.proto": 'syntax = "proto3"; message T { strin x = 1; }'},
    )
    with pytest.raises(
        DefinitionError, match=r"schema_file: the \.proto does not compile: .*strin"
    ):
        load_definitions(path)


def test_a_protobuf_descriptor_set_is_read_as_well(tmp_path: Path) -> None:
    (tmp_path / "tx.proto").write_text(PROTO)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp_path}",
         f"--descriptor_set_out={tmp_path / 'tx.desc'}", "--include_imports", "tx.proto"],
        check=True,
    )  # fmt: skip
    codec = ProtobufCodec.from_file(tmp_path / "tx.desc", None)
    event = {"customer_id": "c1", "amount": 2.5, "category": "x", "online": True, "ts": 10.5}
    assert codec.decode(codec.encode(event)) == event


@pytest.mark.parametrize("kind", ["avro", "protobuf", "jsonschema"])
def test_decoded_events_parse_to_the_same_columns_as_json(kind: str) -> None:
    codec = _codec(kind)
    payloads = [codec.encode(e) for e in EVENTS]
    decoded = [codec.decode(p) for p in payloads]
    source = _source(kind)
    as_json = parse_records(source, [(i, json.dumps(e).encode()) for i, e in enumerate(EVENTS)])
    as_format = parse_records(source, list(enumerate(decoded)))
    assert not as_format.rejected
    assert as_format.ts.tolist() == as_json.ts.tolist()
    for name in source.schema:
        got, want = as_format.columns[name], as_json.columns[name]
        assert got.tolist() == want.tolist() or np.allclose(got, want, equal_nan=True), name


def test_avro_evolution_added_field_with_default_and_removed_optional_field() -> None:
    reader = dict(
        AVSC, fields=[*AVSC["fields"], {"name": "channel", "type": "string", "default": "pos"}]
    )
    older = dict(
        AVSC,
        fields=[*AVSC["fields"], {"name": "note", "type": ["null", "string"], "default": None}],
    )
    codec = AvroCodec(json.dumps(reader))
    written = AvroCodec(json.dumps(older)).encode({**EVENTS[0], "note": "hi"})
    event = codec.decode(written, codec.writer(json.dumps(older)))
    assert event["channel"] == "pos" and "note" not in event
    assert event["ts"] == EVENTS[0]["ts"] and event["amount"] == 12.5


def test_an_avro_version_of_another_type_is_refused_with_the_reason() -> None:
    codec = AvroCodec(json.dumps(AVSC))
    other = dict(AVSC, fields=[{"name": "category", "type": "long"}])
    payload = AvroCodec(json.dumps(other)).encode({"category": 5})
    with pytest.raises(CodecError, match="cannot be read as the source's"):
        codec.decode(payload, codec.writer(json.dumps(other)))


def test_protobuf_versions_read_by_field_number_and_a_changed_type_is_refused() -> None:
    codec = ProtobufCodec.from_proto_text(PROTO)
    older = PROTO.replace("  repeated string tags = 6;\n", "  string note = 7;\n")
    codec.writer(older)  # readable: 6 removed, 7 unknown to the reader
    changed = PROTO.replace("optional double amount = 2;", "string amount = 2;")
    with pytest.raises(CodecError, match=r"'amount' .*number 2.* another type"):
        codec.writer(changed)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xff\xff\xff\xff\xff", "not decodable as Avro"),
        (b"", "not decodable as Avro"),
    ],
)
def test_undecodable_avro_bytes_are_a_codec_error(payload: bytes, reason: str) -> None:
    with pytest.raises(CodecError, match=reason):
        AvroCodec(json.dumps(AVSC)).decode(payload)


def test_trailing_bytes_after_an_avro_record_are_refused() -> None:
    codec = AvroCodec(json.dumps(AVSC))
    with pytest.raises(CodecError, match="bytes left after the record"):
        codec.decode(codec.encode(EVENTS[0]) + b"\x00\x01")


def test_the_wire_format_frame() -> None:
    assert unframe(frame(258, b"abc")) == (258, b"abc")
    assert unframe_indexes(frame(3, b"p", (0,))) == (3, (0,), b"p")
    assert unframe_indexes(frame(3, b"p", (2, 1))) == (3, (2, 1), b"p")
    with pytest.raises(FrameError, match="not in the Confluent wire format"):
        unframe(b'{"customer_id": "c1"}')
    with pytest.raises(FrameError, match="empty message"):
        unframe(None)


@pytest.mark.parametrize("kind", ["avro", "protobuf"])
def test_the_decoder_dead_letters_poison_keeping_the_raw_bytes(tmp_path: Path, kind: str) -> None:
    registry = _registry(tmp_path, kind)
    source = registry.sources["tx"]
    good = asyncio.run(EventEncoder(source).encode_json([json.dumps(EVENTS[0]).encode()]))[0]
    assert isinstance(good, bytes)
    poison = b"\xff\xff\xff\xff\xff\xff\xff\xff"
    no_key = _codec(kind).encode({**EVENTS[1], "customer_id": None})
    batch = asyncio.run(
        SourceDecoder(source).parse(
            source_plan(registry, "tx"), [(0, good), (1, poison), (2, None), (3, no_key)]
        )
    )
    assert batch.offsets.tolist() == [0]
    assert batch.columns["customer_id"].tolist() == ["c1"]
    reasons = {r.offset: (r.reason, r.value) for r in batch.rejected}
    assert reasons[1][1] == poison and "not decodable" in reasons[1][0]
    assert reasons[2][0] == "empty message (no value)"
    assert reasons[3][1] == no_key and "no feature view can take the event" in reasons[3][0]


def _codec(kind: str):  # type: ignore[no-untyped-def]
    if kind == "avro":
        return AvroCodec(json.dumps(AVSC))
    if kind == "protobuf":
        return ProtobufCodec.from_proto_text(PROTO)
    schema = {
        "type": "object",
        "properties": {
            "customer_id": {"type": ["string", "null"]},
            "amount": {"type": ["number", "null"]},
            "category": {"type": "string"},
            "online": {"type": "boolean"},
            "ts": {"type": "number"},
        },
    }
    return codec_from_text("jsonschema", json.dumps(schema))


def _source(kind: str):  # type: ignore[no-untyped-def]
    from feature_service.definitions import Source

    return Source("tx", "tx", "ts", dict(_codec(kind).column_types), "customer_id", 1)


def _registry(tmp_path: Path, kind: str):  # type: ignore[no-untyped-def]
    if kind == "avro":
        line = (
            "  - {name: tx, topic: tx, timestamp_field: ts, format: avro, schema_file: tx.avsc}\n"
        )
        files = {"tx.avsc": json.dumps(AVSC)}
    else:
        line = (
            "  - {name: tx, topic: tx, timestamp_field: ts, format: protobuf, "
            "schema_file: tx.proto}\n"
        )
        files = {"tx.proto": PROTO}
    return load_definitions(_definitions(tmp_path, line, files))
