"""Read a sample of events into a DataFrame: a JSONL, CSV or Parquet file, or a topic.

JSON (files and topic messages) is read record by record, so every column keeps the
Python types the worker's parser will see (`int` stays `int`, a column of numbers with
a null becomes `float`). Lines that are not JSON objects are skipped and counted, as the
worker would dead-letter them. A sample that cannot be read, or holds no event, is a
`ValueError` naming the problem.

>>> sample = read_sample(Path("definitions/sample/transactions.jsonl"))  # doctest: +SKIP
>>> len(sample.frame), sample.skipped  # doctest: +SKIP
(4990, 10)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_service.core.kafka import KafkaConnection, kafka_connection

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
SUPPORTED_SUFFIXES = (*JSON_SUFFIXES, ".csv", ".parquet")

# Default size of a sample read from a topic, and how long to wait for it.
DEFAULT_TOPIC_EVENTS = 10_000
DEFAULT_TOPIC_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Sample:
    """The sampled events, where they came from, and how many records were unusable.

    `absent` marks, per column, the JSON records that do not have that field at all
    (rather than a null): the worker refuses an event that misses a schema field.
    """

    frame: pd.DataFrame
    origin: str
    skipped: int = 0
    absent: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)


def read_sample(path: Path, limit: int | None = None) -> Sample:
    """The first `limit` events (all by default) of a JSONL, CSV or Parquet file."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported sample file type {suffix or '(none)'}; "
            f"use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if suffix in JSON_SUFFIXES:
        with path.open("rb") as lines:
            sample = records_sample(lines, str(path), limit)
    else:
        sample = Sample(_read_table(path, suffix, limit), str(path))
    if sample.frame.empty:
        what = (
            f"no JSON object on any of its {sample.skipped} lines"
            if sample.skipped
            else ("no events")
        )
        raise ValueError(f"{path}: the sample is empty ({what})")
    return sample


def records_sample(values: Iterable[bytes | None], origin: str, limit: int | None) -> Sample:
    """A sample from raw JSON values (file lines or message values); others are skipped."""
    documents: list[dict[str, Any]] = []
    skipped = 0
    for value in values:
        if limit is not None and len(documents) >= limit:
            break
        if value is None or not value.strip():
            continue
        try:
            document = json.loads(value)
        except ValueError:
            document = None
        if isinstance(document, dict):
            documents.append(document)
        else:
            skipped += 1
    frame = pd.DataFrame.from_records(documents)
    absent = {}
    for column in frame.columns:
        mask = np.fromiter((column not in d for d in documents), dtype=bool, count=len(documents))
        if mask.any():
            absent[str(column)] = mask
    return Sample(frame, origin, skipped, absent)


def _read_table(path: Path, suffix: str, limit: int | None) -> pd.DataFrame:
    try:
        if suffix == ".csv":
            return pd.read_csv(path, nrows=limit)
        frame = pd.read_parquet(path)
    except Exception as exc:  # pandas and pyarrow raise many kinds for a broken file
        kind = "CSV" if suffix == ".csv" else "Parquet"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a readable {kind} file ({first})") from None
    return frame if limit is None else frame.head(limit)


def read_topic_sample(
    broker: KafkaConnection | str,
    topic: str,
    limit: int = DEFAULT_TOPIC_EVENTS,
    timeout_s: float = DEFAULT_TOPIC_TIMEOUT_S,
    schema_registry: str | None = None,
) -> Sample:
    """Up to `limit` messages of `topic` from its beginning (every partition).

    Stops early when the topic's current end is reached or after `timeout_s`; reads
    without a consumer group, so it never moves the worker's offsets. With
    `schema_registry` (a Confluent-API registry's URL), messages are in the Confluent
    wire format (Avro, Protobuf, JSON Schema) and read with the schema each was written
    with (`formats.framed_sample`).
    """
    values = asyncio.run(_consume(kafka_connection(broker), topic, limit, timeout_s))
    if schema_registry is not None:
        from feature_service.formats.framed_sample import as_json_objects

        values = as_json_objects(values, schema_registry)
    sample = records_sample(values, f"topic {topic}", limit)
    if sample.frame.empty:
        what = (
            f"none of its {sample.skipped} messages is a JSON object"
            if sample.skipped
            else ("no messages")
        )
        raise ValueError(f"topic {topic!r}: the sample is empty ({what})")
    return sample


async def _consume(
    conn: KafkaConnection, topic: str, limit: int, timeout_s: float
) -> list[bytes | None]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    bootstrap = conn.bootstrap
    consumer = AIOKafkaConsumer(**conn.aiokafka_kwargs(), enable_auto_commit=False, group_id=None)
    from feature_service.stream.topics import topic_partitions

    ids = (await topic_partitions(conn, [topic])).get(topic)
    await consumer.start()
    try:
        if not ids:
            raise ValueError(f"topic {topic!r} does not exist on {bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(ids)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        values: list[bytes | None] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(values) < limit and loop.time() < deadline:
            positions = {tp: await consumer.position(tp) for tp in tps}
            if all(positions[tp] >= ends[tp] for tp in tps):
                break
            batches = await consumer.getmany(timeout_ms=200, max_records=limit - len(values))
            for records in batches.values():
                values.extend(record.value for record in records)
        return values[:limit]
    finally:
        await consumer.stop()
