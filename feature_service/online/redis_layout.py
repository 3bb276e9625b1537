"""Where online state lives in Redis, and how a feature view maps onto tiles.

Keys (all prefixed `fs:`):

- `fs:v:<view>:<entity id>` (hash): the view's tile state of one entity, the fields of
  `aggregation.tiles.TileLayout` (`v`, `w`, `lo`, `hi`, `a`, `b`, `t:<level>:<start>`,
  `r:<start>`), each compact JSON, plus `last`: the entity's newest event time.
- `fs:o:<topic>:<partition>` (string): JSON `[next offset, watermark]`, how far the
  state reflects that partition.
- `fs:stats:<source>` (hash): counters `events`, `dlq`, `late:<view>`, `flushes`
  (written with the state they count), and gauges `last_flush_ms`,
  `newest_event_ts:<partition>`.
- `fs:vstart:<view>:<topic>` (hash): partition -> first offset the stream folded into
  the view; `fs:gen:<source>` (counter): bumped by each backfill write
  (`offline.backfill`). An entity hash a backfill wrote also has the field `bf`.
- `fs:workers` (hash): worker id (`host:pid`) -> JSON heartbeat of a running worker
  (`observability.worker_monitor`): when it was last seen, per source its events and
  events/s; entries of workers gone for long are pruned by the others.

An entity key expires (wall clock, from its last write) after the view's ttl plus its
longest window, so idle entities do not pile up; a view without ttl keeps its keys.
The offset key is written in the same MULTI/EXEC as the state of the batch it
describes, under WATCH, which is what makes each event count exactly once (see
`stream.worker`).
"""

from __future__ import annotations

from functools import lru_cache

from feature_service.aggregation.tiles import TileLayout
from feature_service.definitions import FeatureView

PREFIX = "fs:"
LAST_EVENT_FIELD = "last"


def entity_key(view: str, entity_id: str) -> str:
    return f"{PREFIX}v:{view}:{entity_id}"


def offset_key(topic: str, partition: int) -> str:
    return f"{PREFIX}o:{topic}:{partition}"


def view_start_key(view: str, topic: str) -> str:
    """Hash: partition -> the first offset whose events the stream folded into `view`.

    Set (HSETNX) by the worker with every commit, so it keeps the first one; events
    below it reach the view's online state only through `offline.backfill`.
    """
    return f"{PREFIX}vstart:{view}:{topic}"


def state_generation_key(source: str) -> str:
    """Counter bumped by every backfill write of a view of `source`: workers holding
    entity states in memory fence on it (their next commit fails and replays)."""
    return f"{PREFIX}gen:{source}"


def stats_key(source: str) -> str:
    return f"{PREFIX}stats:{source}"


WORKERS_KEY = f"{PREFIX}workers"


def expiry_seconds(view: FeatureView) -> int | None:
    """How long an entity's state outlives its last write, or None to keep it."""
    if view.ttl_s is None:
        return None
    return view.ttl_s + (view.longest_window_s or 0)


@lru_cache(maxsize=256)
def view_layout(view: FeatureView) -> TileLayout:
    """The tile layout of a view (cached; views are immutable)."""
    return TileLayout(list(view.features), retention_s=view.retention_s)
