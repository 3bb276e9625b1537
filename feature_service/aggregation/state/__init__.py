"""Online state of a feature view (engine v2): each entity's retained events, packed.

What an entity's state holds. Every event of the entity the view takes (not late) with
``ts >= cutoff(w)``, sorted by ``(ts, seq)``, with only what the view's features read:
the event time, the ordering tiebreak ``seq``, one pass flag per distinct `where`
filter (evaluated once, when the event is written), and each aggregated column. Events
below the cutoff are folded into the lifetime features' IRs (the *base*) and dropped.
A feature is evaluated at ``t`` the way training sets evaluate it over the offline log:
the window's events are a range of the sorted events (two binary searches) and the
aggregation's own `Aggregation.over_windows` computes it (`aggregation.window_events`),
so online values and training sets share one implementation by construction.

Why events and not per-hop partial aggregates. The window semantics
(``floor(t - W, h) <= ts <= t`` at any ``t`` within one longest window of the
watermark, DESIGN.md) need every retained event's own time: a state of per-hop IRs
must keep the raw events anyway, and the IRs on top of them (one per level per slot,
as JSON) were 80-90% of the bytes and of the write cost. Reads cost O(events in the
windows read), vectorised over all the entities of a request. That holds for the many
small entities; a busy one is compacted.

Bounded state (busy entities, DESIGN.md "Bounded state"). An entity with more than
``budget`` events (`compaction.HEAD_EVENTS`, 1024) at or above its *horizon* ``H`` (all
its events while it has none) gets a new horizon: the time of the newest
``budget // 2``-th event (`compaction._horizons`). Events at or after ``H`` stay raw (the
*head*); those below are folded into the lifetime base / witnesses as at the cutoff,
and into the *summary* (`summary`): per group of windowed features sharing their
aggregation, column, `where` and hop ``h`` (longest window ``W``), the hops
``[floor(H, h) - W, floor(H, h))`` and the partial hop ``[floor(H, h), H)``, kept as
the aggregation says (`Aggregation.compacted`): the merge of each suffix of hops (a read
merges one IR; the default, for IRs of bounded size), each hop's IR (``frequent_k``,
``histogram``: their IR holds every distinct value), or for ``count_distinct`` and
``approx_count_distinct`` (``"distinct"``: the value depends on the set of distinct
values only) each distinct value with the start of its newest hop (the window's
distinct values are those newest at or after its start, with the head's). Every kind
works through its own `grouped` and `merge` (or `of_distinct`); hops older than a read
at ``t >= H`` can need are dropped, so the summary's size follows windows, hops and
distinct values, never events. The budget (1024, `FS_STATE_HEAD_EVENTS`) keeps a busy
entity's head at 512-1024 events, about what a normal entity's lookup folds, and its
value far below 128 KB. ``H`` is not aligned to a hop: the partial hop makes
any ``H`` exact, so the head stays bounded at any event rate and the refused range is
as short as it can be.

A read at ``t >= H``: a window starting at ``s >= H`` is read from the head as for any
entity; one starting below ``H`` merges the summary from ``s`` on with the fold of the
head's events up to ``t``. A read at ``t < H`` raises `OutsideRetentionError` naming the
horizon (the API answers 400; training sets are exact at any ``t``). ``H`` is at or
before the newest event, so a lookup at or after it is always exact. Events that
arrive below ``H`` later (a lagging partition, within the lateness allowed) are folded
into the summary's hops and the base; a horizon the cutoff has passed is dropped with
its summary (the entity is uncompacted again: the cutoff refuses what it refused).
Advancing ``H`` merges the old suffix from each hop with the newly compacted events
from it, so a flush costs the entity's head and summary, not its history.

Compaction. With ``w`` the newest watermark the state was written at and ``C`` the
coarsest hop, ``cutoff(w) = floor((w - retention_s) / C) * C`` (`StateLayout.cutoff`):
an event below it is folded into the base (lifetime features) and dropped. A window
starting before the cutoff, or a lifetime feature at a time before the newest event in
the base, would not be exact: `evaluate` raises `OutsideRetentionError` instead. Events
of a lagging partition that arrive below an entity's cutoff go straight to the base,
so nothing is lost to the lifetime features.

The encoding (the contract between the worker, the backfill and the readers; one Redis
string per (view, entity), `online.redis_layout`):

=========  ==================================================================
bytes      content
=========  ==================================================================
0..19      the state's version, 20 ASCII digits (writers compare-and-set on it)
20..21     ``F2``: an uncompacted state (the format before bounded state,
           unchanged: a store written then is read as is), ``F3``: a compacted
           one, whose header also has ``h`` (the horizon) and whose records
           are followed by the summary (`summary.encode_summary`: zlib of a
           uint32 length, JSON with per group its first hop and IRs via
           `Aggregation.ir_to_json`, or its distinct values, then their newest
           hops as packed uint16 hop offsets). A process older than F3 refuses an
           F3 state (`StaleFormatError`) instead of misreading it. The layout
           fingerprint is unchanged, so recorded layouts stay valid.
22..29     two little-endian uint32: ``n`` events, ``m`` header bytes
30..       the header, ``m`` bytes of JSON: ``v`` layout fingerprint, ``w``
           watermark, ``l`` newest event time, ``b`` base IRs (lifetime features
           in order), ``bh`` newest time folded into the base, ``o`` per
           ``topic:partition`` the next offset whose events the state holds,
           ``bf`` set by a backfill, ``c`` per column of strings, ints or bools
           the entity's dictionary: its distinct values, as JSON
then       ``n`` packed records (`StateLayout.record`): ``ts`` float64, ``seq``
           int64, ``witness`` uint8 (see Compaction), one uint8 per
           filter, one float64 per float/timestamp column, one uint32 per
           dictionary column (the value's index in the dictionary, 2**32-1: null)
=========  ==================================================================

A blob is decoded with one `numpy.frombuffer` and one `orjson.loads`; many blobs are
decoded, merged and encoded together (`decode`, `write`), so a flush costs a few numpy
passes over all its entities plus a few microseconds per entity.

>>> from feature_service.aggregation.spec import FeatureSpec
>>> layout = StateLayout([FeatureSpec("n_1h", "count", window_s=3600),
...                       FeatureSpec("total", "sum", "amount")], {"amount": "float"})
>>> new = Events.of(layout, [0, 0], [1000.5, 1100.0], [0, 1], {"amount": [2.0, 3.0]})
>>> (blob,) = write(layout, decode(layout, [None]), new, [1100.0], [1100.0])
>>> evaluate(layout, decode(layout, [blob]), [0, 0], [1100.0, 5000.0])
{'n_1h': [2, 0], 'total': [5.0, 5.0]}
"""

from feature_service.aggregation.state.compaction import write
from feature_service.aggregation.state.evaluation import (
    SCALAR_EVENTS,
    SCALAR_ROWS,
    OutsideRetentionError,
    evaluate,
)
from feature_service.aggregation.state.events import Events, Meta, States, empty_events
from feature_service.aggregation.state.format import (
    LayoutMismatchError,
    StaleFormatError,
    decode,
    version_of,
)
from feature_service.aggregation.state.layout import StateLayout

__all__ = [
    "SCALAR_EVENTS",
    "SCALAR_ROWS",
    "Events",
    "LayoutMismatchError",
    "Meta",
    "OutsideRetentionError",
    "StaleFormatError",
    "StateLayout",
    "States",
    "decode",
    "empty_events",
    "evaluate",
    "version_of",
    "write",
]
