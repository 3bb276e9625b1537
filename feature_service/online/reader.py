"""Read features at a time `t` from the online state: one round trip per request.

For every (view, entity) the reader reads the entity's state (`aggregation.state`, one
value per key), all at once (one MGET), decodes each view's states together and evaluates
every requested feature for all of them at once (`aggregation.state.evaluate`, the
training sets' window code). Values are computed at request time, so windows decay: a
1h count read two hours after the last event is 0.

Statuses follow Feast: `PRESENT`, `NULL_VALUE` (the feature has no value at `t`, e.g.
the mean of an empty window), `NOT_FOUND` (no state for the entity), and
`OUTSIDE_MAX_AGE` (the entity's newest event is older than the view's ttl at `t`).
A row with a join key null or empty (any of them, for a composite key) names no
entity: `NOT_FOUND`, never a match.
An entity never seen has the values of no events (`Aggregation.empty_value`: 0 for
`count` and `count_distinct`, null for the rest), which training sets give it too, so a
model is served what it was trained on; its status still says `NOT_FOUND`.
The event timestamp reported is the entity's newest event at or before `t` (for an `as_of`
in the past, not a later event's), and ttl is measured from it. An `as_of` before a busy
entity's compaction horizon is refused (`OutsideRetentionError` naming the horizon; the
API answers 422 and points at training sets).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from redis.asyncio import Redis

from feature_service.aggregation.state import (
    LayoutMismatchError,
    OutsideRetentionError,
    StaleFormatError,
    StateLayout,
    States,
    decode,
    evaluate,
)
from feature_service.definitions import FeatureView
from feature_service.online.redis_layout import entity_key, read_states, stale_keys, view_layout
from feature_service.online.view_layouts import StaleStateError

EntityIds = Sequence[str | None]
"""Entity ids of a lookup (`keys.EntityKey.id_list`); None: a row whose join key is null
or empty names no entity, so it is NOT_FOUND without a read."""

PRESENT = "PRESENT"
NULL_VALUE = "NULL_VALUE"
NOT_FOUND = "NOT_FOUND"
OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"


class FeatureValue(NamedTuple):
    value: Any
    status: str
    event_ts: float | None  # the entity's newest event time, if known


@dataclass(frozen=True)
class ViewColumns:
    """The features of one view for a request's entities, by column: for each feature
    name its values and statuses, one per entity, and per entity its newest event time
    in the store (None: not found), shared by every feature of the view."""

    values: dict[str, list[Any]]
    statuses: dict[str, list[str]]
    event_ts: list[float | None]

    def rows(self) -> list[dict[str, FeatureValue]]:
        """The same by entity: one dict per entity, feature name -> `FeatureValue`."""
        names = list(self.values)
        return [
            {
                n: FeatureValue(self.values[n][r], self.statuses[n][r], self.event_ts[r])
                for n in names
            }
            for r in range(len(self.event_ts))
        ]


async def read_columns(
    redis: Redis,
    requests: Sequence[tuple[FeatureView, EntityIds]],
    t: float,
    only: Mapping[str, frozenset[str]] | None = None,
) -> list[ViewColumns]:
    """For each (view, entities): its features (those named in `only[view name]`, when
    given) of the entities at time `t`.

    All views' states are read at once (`redis_layout.read_states`: one round trip; a
    second one only when some entity is absent, to tell a missing state from an engine
    v1 hash). Raises `aggregation.state.OutsideRetentionError` when `t` reaches before
    the state, and `view_layouts.StaleStateError` when a view's state was written by
    another layout (or by engine v1).
    """
    only = only or {}
    blobs = await _read_blobs(redis, requests)
    out = []
    at = 0
    for view, entities in requests:
        out.append(view_values(view, blobs[at : at + len(entities)], t, only.get(view.name)))
        at += len(entities)
    return out


async def _read_blobs(
    redis: Redis, requests: Sequence[tuple[FeatureView, EntityIds]]
) -> list[bytes | None]:
    """The stored state of every (view, entity) of `requests`, end to end; a
    `StaleStateError` naming the view when one is a hash of engine v1."""
    keys = [key for view, entities in requests for key in _keys(view, entities)]
    named = [key for key in keys if key is not None]
    if len(named) == len(keys):
        blobs = await read_states(redis, named)
    else:  # rows without an entity are not read: NOT_FOUND
        found = iter(await read_states(redis, named) if named else [])
        blobs = [None if key is None else next(found) for key in keys]
    absent = [key for key, blob in zip(keys, blobs, strict=True) if blob is None and key]
    stale = await stale_keys(redis, absent)
    if stale:  # not a string: a hash of engine v1
        view_of = {key: view.name for view, entities in requests for key in _keys(view, entities)}
        raise StaleStateError(view_of[stale[0]])
    return blobs


def _keys(view: FeatureView, entities: EntityIds) -> list[str | None]:
    return [None if entity is None else entity_key(view.name, entity) for entity in entities]


async def read_views(
    redis: Redis,
    requests: Sequence[tuple[FeatureView, EntityIds]],
    t: float,
    only: Mapping[str, frozenset[str]] | None = None,
) -> list[list[dict[str, FeatureValue]]]:
    """`read_columns` by entity: for each (view, entities) one dict per entity."""
    return [columns.rows() for columns in await read_columns(redis, requests, t, only)]


def view_values(
    view: FeatureView,
    blobs: Sequence[bytes | None],
    t: float | Sequence[float],
    only: frozenset[str] | None = None,
) -> ViewColumns:
    """The features of `view` of entities whose stored states are `blobs`, at `t` (one
    time, or one per entity)."""
    times = [float(t)] * len(blobs) if isinstance(t, float | int) else [float(x) for x in t]
    layout = view_layout(view)
    names = [n for n in layout.names if only is None or n in only]
    try:
        states = decode(layout, blobs)
    except (LayoutMismatchError, StaleFormatError):  # the view's definition changed
        raise StaleStateError(view.name) from None
    n = len(blobs)
    metas = states.metas
    present = [i for i, meta in enumerate(metas) if meta is not None]
    missing = [i for i, meta in enumerate(metas) if meta is None]
    values = _not_found_values(layout, names, times, missing)
    statuses: dict[str, list[str]] = {name: [NOT_FOUND] * n for name in names}
    event_ts: list[float | None] = [None] * n
    if not present:
        return ViewColumns(values, statuses, event_ts)
    codes = np.asarray(present, dtype=np.int64)
    row_t = [times[i] for i in present]
    evaluated = evaluate(layout, states, codes, np.asarray(row_t, dtype=np.float64), names)
    expired = []
    for i, at in zip(present, row_t, strict=True):
        last = _newest_at(states, i, at)
        event_ts[i] = last
        expired.append(view.ttl_s is not None and last is not None and at - last > view.ttl_s)
    everyone = len(present) == n and not any(expired)  # the usual lookup: all found, fresh
    for name in names:
        column = evaluated[name]
        if everyone:
            values[name] = column
            statuses[name] = [NULL_VALUE if v is None else PRESENT for v in column]
            continue
        out, status = values[name], statuses[name]
        for i, value, old in zip(present, column, expired, strict=True):
            out[i] = value
            status[i] = OUTSIDE_MAX_AGE if old else (NULL_VALUE if value is None else PRESENT)
    return ViewColumns(values, statuses, event_ts)


def _newest_at(states: States, i: int, at: float) -> float | None:
    """Entity `i`'s newest event time at or before `at` (its lifetime newest when `at` is
    later, the usual lookup): the time `event_timestamps` reports and ttl is measured from,
    so an `as_of` in the past is never answered with a later event's time."""
    meta = states.metas[i]
    assert meta is not None
    if meta.last is None or at >= meta.last:
        return meta.last
    events = states.events
    lo, hi = np.searchsorted(events.code, [i, i + 1])
    before = int(np.searchsorted(events.ts[lo:hi], at, side="right"))
    newest = float(events.ts[lo + before - 1]) if before else None
    if meta.base_hi is not None and meta.base_hi <= at:  # compacted events are older
        newest = meta.base_hi if newest is None else max(newest, meta.base_hi)
    return newest


def _not_found_values(
    layout: StateLayout, names: Sequence[str], times: Sequence[float], missing: Sequence[int]
) -> dict[str, list[Any]]:
    """Each feature's column with the value of no events (`Aggregation.empty_value`) at
    the rows `missing` (entities without state), None where a value is computed later."""
    values: dict[str, list[Any]] = {name: [None] * len(times) for name in names}
    if not missing:
        return values
    agg_of = dict(zip(layout.names, layout.aggs, strict=True))
    for name in names:
        agg, column = agg_of[name], values[name]
        for i in missing:
            column[i] = agg.empty_value(times[i])
    return values


# --------------------------------------------------------------------------- batching


@dataclass
class _Ask:
    requests: Sequence[tuple[FeatureView, EntityIds]]
    t: float
    only: Mapping[str, frozenset[str]]
    answer: asyncio.Future[list[ViewColumns]]


class ReadBatcher:
    """Lookups that arrive together are read and evaluated together.

    A lookup handed to `read` waits for the end of the event loop's current turn, or,
    while a batch is being answered, for its end; every lookup that arrived by then
    (under load: the requests of many connections) shares one `read_states` round trip,
    and each view is decoded and evaluated once for all their entities, each at its own
    lookup's time (`view_values`). The answers are the ones `read_columns` gives each
    lookup alone: the same window code, only over more rows (the numpy path of
    `aggregation.state.evaluate` rather than the one-entity fold, equal to rounding of
    the float sums, DESIGN.md's 1e-9). A lone lookup is `read_columns` itself. When the
    shared evaluation refuses (a time before the retained state, a stale state), each
    lookup is answered on its own, so one bad request fails alone.
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._pending: list[_Ask] = []
        self._running: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def read(
        self,
        requests: Sequence[tuple[FeatureView, EntityIds]],
        t: float,
        only: Mapping[str, frozenset[str]] | None = None,
    ) -> list[ViewColumns]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # the client is used from another event loop now
            self._loop, self._pending, self._running = loop, [], set()
        ask = _Ask(requests, t, only or {}, loop.create_future())
        if not self._pending and not self._running:
            loop.call_soon(self._start)
        self._pending.append(ask)
        return await ask.answer

    def _start(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._answer(batch))
        self._running.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        """One batch at a time: the lookups that came in meanwhile are the next one."""
        self._running.discard(task)
        if self._pending:
            asyncio.get_running_loop().call_soon(self._start)

    async def _answer(self, batch: list[_Ask]) -> None:
        if len(batch) > 1:
            try:
                answers = await self._together(batch)
            except (OutsideRetentionError, StaleStateError):
                pass  # answered one by one below, so each gets its own refusal
            except Exception as exc:  # Redis down: the same for every lookup
                for ask in batch:
                    _settle(ask, error=exc)
                return
            else:
                for ask, answer in zip(batch, answers, strict=True):
                    _settle(ask, answer)
                return
        for ask in batch:
            try:
                answer = await read_columns(self.redis, ask.requests, ask.t, ask.only)
            except Exception as exc:
                _settle(ask, error=exc)
            else:
                _settle(ask, answer)

    async def _together(self, batch: list[_Ask]) -> list[list[ViewColumns]]:
        blobs = await _read_blobs(self.redis, [r for ask in batch for r in ask.requests])
        # per view: the rows of every lookup of it, end to end
        rows: dict[str, tuple[FeatureView, list[bytes | None], list[float], set[str] | None]] = {}
        at = 0
        for ask in batch:
            for view, entities in ask.requests:
                _, view_blobs, times, names = rows.setdefault(view.name, (view, [], [], set()))
                view_blobs += blobs[at : at + len(entities)]
                times += [ask.t] * len(entities)
                wanted = ask.only.get(view.name)
                if wanted is None or names is None:
                    rows[view.name] = (view, view_blobs, times, None)
                else:
                    names |= wanted
                at += len(entities)
        together = {
            name: view_values(view, view_blobs, times, None if names is None else frozenset(names))
            for name, (view, view_blobs, times, names) in rows.items()
        }
        answers = []
        start = dict.fromkeys(rows, 0)
        for ask in batch:
            answer = []
            for view, entities in ask.requests:
                whole = together[view.name]
                a = start[view.name]
                b = start[view.name] = a + len(entities)
                wanted = ask.only.get(view.name)
                asked = [n for n in whole.values if wanted is None or n in wanted]
                answer.append(
                    ViewColumns(
                        {n: whole.values[n][a:b] for n in asked},
                        {n: whole.statuses[n][a:b] for n in asked},
                        whole.event_ts[a:b],
                    )
                )
            answers.append(answer)
        return answers


def _settle(
    ask: _Ask, answer: list[ViewColumns] | None = None, error: Exception | None = None
) -> None:
    """Give `ask` its answer or error, unless it is no longer waiting (cancelled)."""
    if ask.answer.done():
        return
    if error is not None:
        ask.answer.set_exception(error)
    else:
        assert answer is not None
        ask.answer.set_result(answer)


_batchers: weakref.WeakKeyDictionary[Redis, ReadBatcher] = weakref.WeakKeyDictionary()


async def read_batched(
    redis: Redis,
    requests: Sequence[tuple[FeatureView, EntityIds]],
    t: float,
    only: Mapping[str, frozenset[str]] | None = None,
) -> list[ViewColumns]:
    """`read_columns`, batched with the other lookups on `redis` (`ReadBatcher`)."""
    batcher = _batchers.get(redis)
    if batcher is None:
        batcher = _batchers[redis] = ReadBatcher(redis)
    return await batcher.read(requests, t, only)
