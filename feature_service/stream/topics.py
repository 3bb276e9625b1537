"""Create the topics definitions need: one per source and its dead-letter topic.

>>> import asyncio
>>> asyncio.run(ensure_topics("127.0.0.1:9092", registry))  # doctest: +SKIP
['transactions', 'transactions.dlq']
"""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from feature_service.core.kafka import KafkaConnection, check_credentials, kafka_connection
from feature_service.definitions import Registry


async def ensure_topics(broker: KafkaConnection | str, registry: Registry) -> list[str]:
    """Create missing source and dead-letter topics; return the names created.

    A source topic gets the source's `partitions`; a dead-letter topic one partition.
    """
    conn = kafka_connection(broker)
    await check_credentials(conn)  # wrong credentials: one clear error, not a retry loop
    admin = AIOKafkaAdminClient(**conn.aiokafka_kwargs(), request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted: dict[str, int] = {}
        for source in registry.sources.values():
            wanted[source.topic] = source.partitions
            wanted[source.dlq_topic] = 1
        missing = [NewTopic(name, n, 1) for name, n in wanted.items() if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process was first
                await admin.create_topics(missing)
        return [t.name for t in missing]
    finally:
        await admin.close()


async def topic_partitions(
    broker: KafkaConnection | str, topics: list[str]
) -> dict[str, list[int]]:
    """The partition ids of each of `topics` that exists (a missing one is left out).

    Asked with a metadata request naming the topics: a consumer without a group only
    knows the partitions of topics it was assigned (on Kafka; Tansu tells all).
    """
    conn = kafka_connection(broker)
    admin = AIOKafkaAdminClient(**conn.aiokafka_kwargs(), request_timeout_ms=10_000)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {
        str(t["topic"]): sorted(int(p["partition"]) for p in t["partitions"])
        for t in described
        if t["error_code"] == 0 and t["partitions"]
    }
