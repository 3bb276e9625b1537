"""Feed whole fetched batches to handlers, inside a Faust app. Faust internals live here only.

Faust's per-event path (Event and Message objects, per-message acks, stream flow
control) costs ~200 µs an event; our features are computed per batch, vectorised. So
this module swaps the consumer's drain loop, for the topics that have a batch handler,
for one that hands each fetched (partition, records) batch to an async handler, while
Faust keeps doing what it is good at: consumer group membership, partition assignment,
rebalancing and the worker lifecycle.

Contract with the application (`BatchApp.batch_handler`, `BatchApp.batch_flusher`):

- `handler(tp, records)` gets the records of one partition in offset order. It may keep
  them pending; `flusher(force)` makes pending work durable when it decides to (or
  always, with `force`) and returns the offsets that are durable now. Only those are
  committed to Kafka, so Kafka's committed offset never runs ahead of the application's
  own state, and a restart never skips an event.
- A handler may raise `Rewind(offset)`: the partition is re-read from `offset` (after
  it dropped pending work, or found its stored state behind Kafka's position); a
  flusher may raise `RewindPartitions({tp: offset})` for several at once (after it
  dropped the pending work of those partitions).
- After each batch, the events the partition still holds beyond it (its highwater
  minus the next offset) are in `BatchApp.lag`: a flusher that sees itself behind
  can wait for bigger batches (`stream.source_processor.SourceProcessor.flush_due`).
- A rebalance waits for the handler or flush in progress, then forces a flush, before
  partitions are revoked; so a partition is never written by two workers at once
  through this process's fault.
- An exception in a handler or flush is logged and retried after a pause: nothing is
  skipped (Redis or the broker being away makes the worker wait).

Written against faust-streaming 0.15.x (pinned `<0.16` in pyproject.toml); the worker
tests (restarts, SIGKILL at random moments) cover it.
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
BatchFlusher = Callable[[bool], Awaitable[Mapping[TP, int]]]

# How long a failing handler waits before its batch is tried again.
RETRY_PAUSE_S = 1.0


class Rewind(Exception):
    """Raised by a handler: read this partition again from `offset`."""

    def __init__(self, offset: int) -> None:
        super().__init__(f"rewind to offset {offset}")
        self.offset = offset


class RewindPartitions(Exception):
    """Raised by a flusher: read these partitions again from these offsets."""

    def __init__(self, offsets: Mapping[TP, int]) -> None:
        super().__init__(f"rewind {dict(offsets)}")
        self.offsets = dict(offsets)


class BatchConsumer(faust_aiokafka.Consumer):
    """A Faust aiokafka consumer that hands whole batches to registered handlers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._busy = asyncio.Lock()

    @property
    def batch_app(self) -> BatchApp:
        app: BatchApp = self.app  # type: ignore[assignment]
        return app

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        async with self._busy:  # the batch in flight finishes, then pending work is saved
            await self._retry(self._flush, True)
        await super().on_partitions_revoked(revoked)

    async def _drain_messages(self, fetcher: Any) -> None:
        handlers = self.batch_app.batch_handlers
        while not (self.should_stop or fetcher.should_stop):
            records, _active = await self._wait_next_records(timeout=0.5)
            if self.should_stop:
                break
            generation = self.app.consumer_generation_id
            async with self._busy:
                for tp, batch in (records or {}).items():
                    if self.app.consumer_generation_id != generation or not self.flow_active:
                        break  # a rebalance began: what is left is fetched again later
                    handler = handlers.get(tp.topic)
                    if handler is None or not batch:
                        continue
                    try:
                        await self._retry(handler, tp, batch)
                        self._note_lag(tp, batch[-1].offset + 1)
                    except Rewind as rewind:
                        log.info(
                            "%s[%d]: re-reading from %d", tp.topic, tp.partition, rewind.offset
                        )
                        await self.seek(tp, rewind.offset)
                await self._retry(self._flush, False)

    def _note_lag(self, tp: TP, next_offset: int) -> None:
        try:
            highwater = self.highwater(tp)
        except Exception:  # no consumer state for it (mid-rebalance): unknown
            self.batch_app.lag.pop(tp, None)
            return
        if highwater is None:
            self.batch_app.lag.pop(tp, None)
        else:
            self.batch_app.lag[tp] = max(0, int(highwater) - next_offset)

    async def _flush(self, force: bool) -> None:
        flusher = self.batch_app.batch_flusher
        if flusher is None:
            return
        try:
            durable = await flusher(force)
        except RewindPartitions as rewind:
            assigned = self.assignment()
            for tp, offset in rewind.offsets.items():
                if tp in assigned:  # a partition taken away meanwhile is someone else's
                    log.info("%s[%d]: re-reading from %d", tp.topic, tp.partition, offset)
                    await self.seek(tp, offset)
            return
        if durable:
            try:
                await self._commit(dict(durable))
            except Exception as exc:  # advisory only; the next commit catches up
                log.warning("offset commit failed: %r", exc)

    async def _retry(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        while True:
            try:
                await fn(*args)
                return
            except (asyncio.CancelledError, Rewind):
                raise
            except Exception:
                if self.should_stop:
                    raise
                log.exception("%s failed; retrying in %.0fs", fn, RETRY_PAUSE_S)
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
        self.batch_flusher: BatchFlusher | None = None
        self.batch_closer: Callable[[], Awaitable[None]] | None = None
        self.lag: dict[TP, int] = {}  # events after the last batch handled, per partition

    def batch_handler(self, topic: str, handler: BatchHandler) -> None:
        """Subscribe to `topic` and hand its batches to `handler`."""
        self.batch_handlers[topic] = handler
        self.topics.add(self.topic(topic, acks=False))

    async def on_stop(self) -> None:
        await super().on_stop()
        if self.batch_closer is not None:
            await self.batch_closer()

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)
