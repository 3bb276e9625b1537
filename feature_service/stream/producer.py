"""Send events to a source's topic, in order, keyed by the source's entity key."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaProducer

from feature_service.core.kafka import KafkaConnection, check_credentials, kafka_connection
from feature_service.definitions import Source
from feature_service.stream.event_files import EventMessage

# Futures in flight before we wait for the oldest: bounds memory, keeps batches full.
_MAX_IN_FLIGHT = 20_000


async def produce_messages(
    broker: KafkaConnection | str,
    source: Source,
    messages: Iterable[EventMessage],
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Produce `messages` to `source.topic`; return how many the broker acknowledged.

    Order is kept per key: aiokafka's default partitioner (murmur2, as Kafka's Java
    client) sends one key to one partition, and one connection keeps send order.
    """
    conn = kafka_connection(broker)
    await check_credentials(conn)
    producer = AIOKafkaProducer(
        **conn.aiokafka_kwargs(),
        linger_ms=5,
        max_batch_size=256 * 1024,
        acks="all",
    )
    await producer.start()
    sent = 0
    try:
        pending: list[asyncio.Future[object]] = []
        for message in messages:
            pending.append(await producer.send(source.topic, message.value, key=message.key))
            if len(pending) >= _MAX_IN_FLIGHT:
                sent += await _settle(pending, on_sent)
                pending = []
        sent += await _settle(pending, on_sent)
    finally:
        await producer.stop()
    return sent


async def _settle(
    pending: list[asyncio.Future[object]], on_sent: Callable[[int], None] | None
) -> int:
    await asyncio.gather(*pending)
    if on_sent is not None:
        on_sent(len(pending))
    return len(pending)
