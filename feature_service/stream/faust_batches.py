"""Feed whole fetched batches to handlers, inside a Faust app. Faust internals live here only.

Faust's per-event path (Event and Message objects, per-message acks, stream flow
control) costs ~200 µs an event; our features are computed per batch, vectorised. So
this module swaps the consumer's drain loop, for the topics that have a batch handler,
for one that hands each fetched (partition, records) batch to an async handler, while
Faust keeps doing what it is good at: consumer group membership, partition assignment,
rebalancing and the worker lifecycle.

Contract with handlers:

- `handler(tp, records)` gets the records of one partition in offset order. It must be
  idempotent per offset (a rebalance or a restart re-delivers a batch); the stream
  worker stores its offsets with its state for that reason.
- A rebalance waits for the batch in flight to finish before partitions are revoked
  (`on_partitions_revoked`), so a partition is never handled by two workers at once
  through this process's fault.
- Once a batch is handled its end offset is committed to Kafka (for lag metrics and a
  quick restart position; correctness does not depend on it).
- An exception in a handler is logged and the batch is retried after a pause: nothing
  is skipped; a handler should dead-letter bad records itself.

Written against faust-streaming 0.15.x (pinned `<0.16` in pyproject.toml); the tests in
tests/integration/test_faust_batches.py cover rebalancing and re-delivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = logging.getLogger(__name__)

BatchHandler = Callable[[TP, Sequence[Any]], Awaitable[None]]

# How long a failing handler waits before its batch is tried again.
RETRY_PAUSE_S = 1.0


class BatchConsumer(faust_aiokafka.Consumer):
    """A Faust aiokafka consumer that hands whole batches to registered handlers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def batch_handlers(self) -> Mapping[str, BatchHandler]:
        return getattr(self.app, "batch_handlers", {})

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        await self._idle.wait()  # let the batch in flight finish first
        await super().on_partitions_revoked(revoked)

    async def _drain_messages(self, fetcher: Any) -> None:
        handlers = self.batch_handlers
        while not (self.should_stop or fetcher.should_stop):
            records, _active = await self._wait_next_records(timeout=1.0)
            if not records or self.should_stop:
                continue
            generation = self.app.consumer_generation_id
            commits: dict[TP, int] = {}
            for tp, batch in records.items():
                if self.app.consumer_generation_id != generation or not self.flow_active:
                    break  # a rebalance began: the rest is fetched again from the new position
                handler = handlers.get(tp.topic)
                if handler is None or not batch:
                    continue
                self._idle.clear()
                try:
                    await self._handle_until_done(handler, tp, batch)
                finally:
                    self._idle.set()
                commits[tp] = batch[-1].offset + 1
            if commits:
                try:
                    await self._commit(commits)
                except Exception as exc:  # the commit is advisory; the next one catches up
                    log.warning("offset commit failed: %r", exc)

    async def _handle_until_done(self, handler: BatchHandler, tp: TP, batch: Sequence[Any]) -> None:
        while True:
            try:
                await handler(tp, batch)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                if self.should_stop:
                    raise
                log.exception(
                    "batch of %d records from %s[%d] failed; retrying in %.0fs",
                    len(batch), tp.topic, tp.partition, RETRY_PAUSE_S,
                )
                await asyncio.sleep(RETRY_PAUSE_S)


class BatchTransport(faust_aiokafka.Transport):
    Consumer = BatchConsumer


class BatchApp(faust.App):
    """A Faust app whose registered topics are consumed batch by batch.

    >>> app = BatchApp("features", broker="kafka://127.0.0.1:9092")  # doctest: +SKIP
    >>> app.batch_handler("transactions", handle)  # doctest: +SKIP
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers: dict[str, BatchHandler] = {}

    def batch_handler(self, topic: str, handler: BatchHandler) -> None:
        """Subscribe to `topic` and hand its batches to `handler`."""
        self.batch_handlers[topic] = handler
        self.topics.add(self.topic(topic, acks=False))

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)
