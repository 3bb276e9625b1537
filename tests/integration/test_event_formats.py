"""Avro and Protobuf sources on the real stack give what the same events give as JSON.

One worker reads three topics carrying the same events: as JSON, as Avro, as Protobuf
(each with the same feature view). Online values and training sets must be equal, and
poison bytes (and, through the registry, an unknown schema id) must land in the
dead-letter topic with the reason.

Two ways: inline schema files (bare payloads), and through a real Confluent-API
schema registry (Apicurio Registry, `embedded.schema_registry`) with the schema
evolved mid-stream: the first half written with an older version (it has an optional
field the source no longer has, and lacks one the source added with a default).
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis

from feature_service import FeatureStore
from feature_service.core.config import Settings
from feature_service.definitions import Registry, Source, load_definitions
from feature_service.embedded import EmbeddedStack
from feature_service.formats import codec_from_text
from feature_service.formats.schema_registry import registry_at
from feature_service.formats.wire import frame
from feature_service.online.redis_layout import stats_key
from feature_service.stream.dead_letters import DeadLetterReader
from feature_service.stream.event_encoder import EventEncoder
from feature_service.stream.event_files import EventMessage
from feature_service.stream.producer import produce_messages
from feature_service.stream.topics import ensure_topics
from tests.conditions import wait_for
from tests.integration.streaming import make_events, messages, start_worker

pytestmark = pytest.mark.integration

FIELDS = [
    {"name": "customer_id", "type": ["null", "string"]},
    {"name": "amount", "type": ["null", "double"]},
    {"name": "category", "type": "string"},
    {"name": "online", "type": "boolean"},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
]
AVRO_NOW = {
    "type": "record",
    "name": "Transaction",
    "fields": [*FIELDS, {"name": "channel", "type": "string", "default": "pos"}],
}
AVRO_BEFORE = {
    "type": "record",
    "name": "Transaction",
    "fields": [*FIELDS, {"name": "note", "type": ["null", "string"], "default": None}],
}
PROTO_NOW = """syntax = "proto3";
import "google/protobuf/timestamp.proto";
message Transaction {
  optional string customer_id = 1;
  optional double amount = 2;
  string category = 3;
  bool online = 4;
  google.protobuf.Timestamp ts = 5;
  string channel = 6;
}
"""
PROTO_BEFORE = PROTO_NOW.replace("  string channel = 6;\n", "  optional string note = 7;\n")
COLUMNS = "{customer_id: string, amount: float, category: string, online: bool, ts: timestamp}"
FEATURES = """      - {name: n_1h, aggregation: count, window: 1h}
      - {column: amount, aggregations: [sum, mean, min, max, std], windows: [1h, 1d]}
      - {column: category, aggregation: count_distinct, window: 1d}
      - {name: last_amount, column: amount, aggregation: last}
      - {name: since_last, aggregation: time_since_last}
      - {name: grocery_1d, aggregation: count, window: 1d, where: "category == 'grocery'"}
"""
N_EVENTS = 400


def _definitions(folder: Path, tag: str, registry_url: str | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tx.avsc").write_text(json.dumps(AVRO_NOW))
    (folder / "tx.proto").write_text(PROTO_NOW)
    text = "entities:\n  - {name: customer, join_key: customer_id}\nsources:\n"
    for kind in ("json", "avro", "protobuf"):
        text += f"  - name: {kind}_{tag}\n    topic: {kind}-{tag}\n    timestamp_field: ts\n"
        text += f"    schema: {COLUMNS}\n"
        if kind != "json":
            suffix = "avsc" if kind == "avro" else "proto"
            text += f"    format: {kind}\n    schema_file: tx.{suffix}\n"
            if registry_url:
                subject = f"{kind}-{tag}-value"
                text += f"    schema_registry: {{url: '{registry_url}', subject: {subject}}}\n"
    text += "feature_views:\n"
    for kind in ("json", "avro", "protobuf"):
        text += f"  - name: {kind}_view_{tag}\n    source: {kind}_{tag}\n    entity: customer\n"
        text += "    features:\n" + FEATURES
    path = folder / "defs.yaml"
    path.write_text(text)
    return path


def _formatted(source: Source, events: list[dict[str, Any]], registry: bool) -> list[EventMessage]:
    """The events in the source's format; through a registry, the first half written
    with the older version of the schema (registered first, as a producer would)."""
    assert source.format is not None
    values = [json.dumps(e).encode() for e in events]
    encoded = asyncio.run(EventEncoder(source).encode_json(values))
    assert all(isinstance(v, bytes) for v in encoded)
    if registry:
        before = AVRO_BEFORE if source.format.kind == "avro" else None
        text = json.dumps(before) if before else PROTO_BEFORE
        older = codec_from_text(source.format.kind, text)
        assert source.format.registry_url and source.format.subject
        client = registry_at(source.format.registry_url)
        old_id = asyncio.run(client.register(source.format.subject, older.registry_type, text))
        half = len(events) // 2
        for i, event in enumerate(events[:half]):
            row = {**event, "note": "older"}
            encoded[i] = frame(old_id, older.encode(row), older.message_indexes)
    return [
        EventMessage(None if e["customer_id"] is None else e["customer_id"].encode(), v)  # type: ignore[arg-type]
        for e, v in zip(events, encoded, strict=True)
    ]


def _run(stack: EmbeddedStack, tmp: Path, registry_url: str | None) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    definitions = _definitions(tmp / "defs", tag, registry_url).parent
    registry = load_definitions(definitions)
    offline = tmp / "offline"
    events = [e for e in make_events(N_EVENTS, seed=27) if isinstance(e, dict)]
    sources = {kind: registry.sources[f"{kind}_{tag}"] for kind in ("json", "avro", "protobuf")}
    asyncio.run(ensure_topics(stack.broker.bootstrap, registry))
    poison = [EventMessage(b"c1", b"\xff\xff\xff\xff\xff\xff\xff\xff")]
    if registry_url:
        poison.append(EventMessage(b"c1", frame(987_654, b"\x02c1")))
    for kind, source in sources.items():
        framed = bool(registry_url)
        sent = messages(events) if kind == "json" else _formatted(source, events, framed)
        if kind != "json":
            sent += poison
        asyncio.run(produce_messages(stack.broker.bootstrap, source, sent))
    client = redis.Redis.from_url(stack.redis.url)
    worker = start_worker(stack, definitions, offline)
    try:
        for kind, source in sources.items():
            key = stats_key(source.name)
            want = len(events) + (0 if kind == "json" else len(poison))
            wait_for(
                lambda key=key, want=want: (
                    sum(int(client.hget(key, k) or 0) for k in (b"events", b"dlq")) >= want
                ),
                180,
                f"{kind} events",
                worker,
            )
    finally:
        worker.stop()
        client.close()
    return {"registry": registry, "tag": tag, "offline": offline, "events": events,
            "sources": sources, "definitions": definitions, "poison": poison}  # fmt: skip


@pytest.fixture(scope="module", params=["inline", "registry"])
def streamed(
    request: pytest.FixtureRequest, stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp(f"formats-{request.param}")
    if request.param == "inline":
        yield _run(stack, tmp, None)
        return
    from feature_service.embedded.schema_registry import EmbeddedSchemaRegistry

    schema_registry = EmbeddedSchemaRegistry(tmp / "logs").start()
    try:
        yield _run(stack, tmp, schema_registry.url)
    finally:
        schema_registry.stop()


def _store(stack: EmbeddedStack, run: dict[str, Any]) -> FeatureStore:
    settings = Settings(
        redis_url=stack.redis.url,
        broker_url=stack.broker.bootstrap,
        offline_uri=str(run["offline"]),
        definitions=run["definitions"],
    )
    return FeatureStore(settings, run["registry"])


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def test_avro_and_protobuf_give_the_online_values_and_training_sets_of_json(
    stack: EmbeddedStack, streamed: dict[str, Any]
) -> None:
    registry: Registry = streamed["registry"]
    tag = streamed["tag"]
    events = streamed["events"]
    customers = sorted({e["customer_id"] for e in events if e["customer_id"]})
    last = max(e["ts"] for e in events)
    rows = pd.DataFrame(
        {
            "customer_id": [c for c in customers for _ in range(3)],
            "event_timestamp": pd.to_datetime(
                [t for _ in customers for t in (last - 86400, last - 3600, last + 60)], unit="s"
            ),
        }
    )
    with _store(stack, streamed) as store:
        answers: dict[str, tuple[Any, Any]] = {}
        for kind in ("json", "avro", "protobuf"):
            view = registry.feature_views[f"{kind}_view_{tag}"]
            names = [f"{view.name}:{f.name}" for f in view.features]
            online = store.get_online_features(
                names, {"customer_id": customers}, as_of=last + 60
            ).to_dict()
            offline = store.get_historical_features(rows, names)
            answers[kind] = (
                {f.name: [_plain(v) for v in online[f.name]] for f in view.features},
                {f.name: [_plain(v) for v in offline[f.name]] for f in view.features},
            )
    assert answers["json"][0]["n_1h"] != [0] * len(customers)  # something was counted
    for kind in ("avro", "protobuf"):
        assert answers[kind][0] == answers["json"][0], f"{kind}: online values differ"
        assert answers[kind][1] == answers["json"][1], f"{kind}: training sets differ"


def test_poison_bytes_and_unknown_schema_ids_are_dead_lettered_with_reasons(
    stack: EmbeddedStack, streamed: dict[str, Any]
) -> None:
    reader = DeadLetterReader(stack.broker.bootstrap)
    for kind in ("avro", "protobuf"):
        source = streamed["sources"][kind]
        letters = asyncio.run(reader.latest(source, limit=10))
        reasons = sorted(letter.reason for letter in letters)
        assert len(reasons) == len(streamed["poison"]), reasons
        if source.format.framed:
            assert any(r.startswith("unknown schema id 987654") for r in reasons), reasons
            assert any("not in the Confluent wire format" in r for r in reasons), reasons
        else:
            assert all(r.startswith("not decodable as") for r in reasons), reasons
