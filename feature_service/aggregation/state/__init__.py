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
windows read), vectorised over all the entities of a request; a view with very hot
entities (thousands of events per window) would want per-hop summaries on top, as the
next step.

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
20..21     ``F2``: this format
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
