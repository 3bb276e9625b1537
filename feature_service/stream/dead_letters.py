"""Reading a source's dead-letter topic (`<topic>.dlq`): why events were refused.

The worker writes one JSON record per refused event (`SourceProcessor._dead_letter`):
`{"source", "topic", "partition", "offset", "reason", "value"}`, keyed by
`<topic>:<partition>:<offset>`, so the copies a replay sends again are shown once.
`feature-service dlq` and `GET /dlq` (the UI's dead letters) read them here.

>>> reader = DeadLetterReader(settings.kafka)                       # doctest: +SKIP
>>> asyncio.run(reader.latest(registry.sources["transactions"], limit=5))  # doctest: +SKIP
[DeadLetter(source='transactions', partition=1, offset=17, reason="missing field ...", ...)]
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from feature_service.core.kafka import KafkaConnection, kafka_connection
from feature_service.definitions import Source
from feature_service.observability.pipeline import BrokerOffsets

DLQ_PARTITION = 0  # a dead-letter topic has one partition (stream/topics.py)


@dataclass(frozen=True)
class DeadLetter:
    """One refused event: where it was in the source topic, why, and its raw value."""

    source: str
    partition: int | None
    offset: int | None
    reason: str
    value: str | None
    dlq_offset: int
    timestamp_ms: int | None

    @property
    def key(self) -> tuple[str, int | None, int | None]:
        """Which event: its copies (a replay dead-letters it again) have the same key."""
        if self.partition is None or self.offset is None:
            return (self.source, None, self.dlq_offset)
        return (self.source, self.partition, self.offset)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason,
            "value": self.value,
            "dlq_offset": self.dlq_offset,
            "timestamp_ms": self.timestamp_ms,
        }


def parse_dead_letter(
    source: str, raw: bytes | None, dlq_offset: int, timestamp_ms: int | None
) -> DeadLetter:
    """A record of the dead-letter topic; one written by something else is shown as such.

    >>> parse_dead_letter("tx", b'{"partition":1,"offset":7,"reason":"r","value":"v"}', 3, None)
    DeadLetter(source='tx', partition=1, offset=7, reason='r', value='v', dlq_offset=3, \
timestamp_ms=None)
    """
    try:
        body = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        text = None if raw is None else raw.decode("utf-8", "replace")
        reason = "not a dead letter of the worker"
        return DeadLetter(source, None, None, reason, text, dlq_offset, timestamp_ms)
    partition, offset, value = body.get("partition"), body.get("offset"), body.get("value")
    return DeadLetter(
        source=source,
        partition=partition if isinstance(partition, int) else None,
        offset=offset if isinstance(offset, int) else None,
        reason=str(body.get("reason", "")),
        value=value if isinstance(value, str) or value is None else str(value),
        dlq_offset=dlq_offset,
        timestamp_ms=timestamp_ms,
    )


class DeadLetterReader:
    """Reads dead-letter topics with a consumer of no group (it commits nothing)."""

    def __init__(self, broker: KafkaConnection | str, timeout_s: float = 5.0) -> None:
        self.connection = kafka_connection(broker)
        self.timeout_s = timeout_s

    async def latest(self, source: Source, limit: int) -> list[DeadLetter]:
        """The newest `limit` dead letters of a source, oldest first."""
        return await asyncio.wait_for(self._latest(source, limit), self.timeout_s * 2)

    async def _latest(self, source: Source, limit: int) -> list[DeadLetter]:
        consumer = await self._consumer()
        try:
            return (await self._read_tail(consumer, source, limit))[0]
        finally:
            await consumer.stop()

    async def follow(self, source: Source, limit: int) -> AsyncIterator[DeadLetter]:
        """The newest `limit` dead letters, then each new one as it comes, until cancelled."""
        consumer = await self._consumer()
        try:
            letters, seen = await self._read_tail(consumer, source, limit)
            for letter in letters:
                yield letter
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        letter = _letter(source, record)
                        if letter.key not in seen:
                            seen.add(letter.key)
                            yield letter
        finally:
            await consumer.stop()

    async def _consumer(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            **self.connection.aiokafka_kwargs(),
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",  # below the retained start: from the start
            request_timeout_ms=int(self.timeout_s * 1000),
        )
        await consumer.start()
        return consumer

    async def _read_tail(
        self, consumer: AIOKafkaConsumer, source: Source, limit: int
    ) -> tuple[list[DeadLetter], set[tuple[str, int | None, int | None]]]:
        """Read from `2 * limit` records before the end (room for a replay's copies) to
        the end; the last `limit` distinct letters and every key seen."""
        ends = await BrokerOffsets(self.connection, timeout_s=self.timeout_s).end_offsets(
            {source.dlq_topic: 1}
        )
        end = ends.get((source.dlq_topic, DLQ_PARTITION), 0)
        tp = TopicPartition(source.dlq_topic, DLQ_PARTITION)
        consumer.assign([tp])
        consumer.seek(tp, max(end - 2 * limit, 0))
        letters: dict[tuple[str, int | None, int | None], DeadLetter] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while end > 0 and await consumer.position(tp) < end and loop.time() < deadline:
            batches = await consumer.getmany(tp, timeout_ms=200)
            for record in batches.get(tp, []):
                letter = _letter(source, record)
                letters.setdefault(letter.key, letter)
        ordered = sorted(letters.values(), key=lambda letter: letter.dlq_offset)
        return ordered[-limit:] if limit > 0 else [], set(letters)


def _letter(source: Source, record: Any) -> DeadLetter:
    return parse_dead_letter(source.name, record.value, record.offset, record.timestamp)
