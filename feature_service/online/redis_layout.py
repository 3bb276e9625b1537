"""Where online state lives in Redis, and how a feature view maps onto tiles.

Keys (all prefixed `fs:`; the part in braces is the Redis Cluster hash tag, so the keys
sharing it live in one hash slot):

- `fs:v:{<entity id>}:<view>` (hash): the view's tile state of one entity, the fields of
  `aggregation.tiles.TileLayout` (`v`, `w`, `lo`, `hi`, `a`, `b`, `t:<level>:<start>`,
  `r:<start>`), each compact JSON, plus:
  - `last`: the entity's newest event time;
  - `_n`: a version, incremented by every write (writers compare-and-set on it);
  - `_o:<topic>:<partition>`: the next offset of that partition of the view's source
    topic whose events this state already holds (all of this entity's events of that
    partition below it are in the state).
  All views of one entity id share a slot, so a lookup of one entity reads one slot.
- `fs:o:{<source>}:<partition>` (string): JSON `[next offset, watermark]`, how far the
  source's state (all entities) reflects that partition of its topic.
- `fs:stats:{<source>}` (hash): counters `events`, `dlq`, `late:<view>`, `flushes`
  (written with the offsets they count), and gauges `last_flush_ms`,
  `newest_event_ts:<partition>`. Same slot as the source's offset keys.
- `fs:vstart:{<source>}:<view>` (hash): partition -> first offset the stream folded
  into the view (HSETNX with every offset commit, so it keeps the first); events below
  it reach the view only through `stream.backfill`. Same slot as the offsets.
  An entity hash a backfill wrote also has the field `bf`.
- `fs:layouts:{<source>}` (hash): view -> JSON record of the tile layout its entity
  hashes are written with (`{"v": fingerprint, "levels": [...], "features": [[name,
  aggregation, column, window_s, hop_s, where], ...]}`). Set (HSETNX) by a worker for
  every view before it serves them; `validate`, `apply`, the worker and the API refuse
  definitions that change a recorded layout (`online.view_layouts`). Same slot as the
  offsets. A view deleted for good, whose name is to be reused with another layout,
  needs its entity keys and this field deleted by hand.
- `fs:workers` (hash): worker id (`host:pid`) -> JSON heartbeat of a running worker
  (`observability.worker_monitor`): when it was last seen, per source its events and
  events/s; entries of workers gone for long are pruned by the others.

Writes go through two Lua scripts (standalone and Cluster alike): `APPLY_ENTITY`
changes one entity hash if its version is still the one the writer read, and
`COMMIT_OFFSETS` moves a source's offset keys, if each still holds what the writer
read, together with its counters. The stream worker applies every entity of a flush,
then commits the offsets (see `stream.source_processor` for why that is exactly once).
Another writer of view state (e.g. a backfill) must use `APPLY_ENTITY` too, so the
worker's compare-and-set sees its writes.

An entity key expires (wall clock, from its last write) after the view's ttl plus its
longest window, so idle entities do not pile up; a view without ttl keeps its keys.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from feature_service.aggregation.tiles import TileLayout, decode_field
from feature_service.definitions import FeatureView
from feature_service.plan import view_plan

PREFIX = "fs:"
LAST_EVENT_FIELD = "last"
VERSION_FIELD = "_n"


def entity_key(view: str, entity_id: str) -> str:
    """`fs:v:{c001}:customer_txn`: one entity's views share the hash slot of `{c001}`."""
    return f"{PREFIX}v:{{{entity_id}}}:{view}"


def entity_keys_pattern(view: str) -> str:
    """A SCAN MATCH pattern for the entity keys of `view` (glob characters escaped)."""
    escaped = re.sub(r"([*?\[\]\\])", r"\\\1", view)
    return f"{PREFIX}v:{{*}}:{escaped}"


def entity_of_key(key: str, view: str) -> str:
    """The entity id in an entity key of `view` (the inverse of `entity_key`)."""
    return key[len(f"{PREFIX}v:{{") : -len(f"}}:{view}")]


def offset_key(source: str, partition: int) -> str:
    return f"{PREFIX}o:{{{source}}}:{partition}"


def view_start_key(view: str, source: str) -> str:
    """Hash: partition -> the first offset whose events the stream folded into `view`.

    Set (HSETNX) by the worker with every offset commit, so it keeps the first one;
    events below it reach the view's online state only through `stream.backfill`.
    """
    return f"{PREFIX}vstart:{{{source}}}:{view}"


def layouts_key(source: str) -> str:
    """Hash: view -> the recorded tile layout of its state (`online.view_layouts`)."""
    return f"{PREFIX}layouts:{{{source}}}"


def stats_key(source: str) -> str:
    return f"{PREFIX}stats:{{{source}}}"


def applied_field(topic: str, partition: int) -> str:
    """The entity field holding the next offset of `topic`'s `partition` already in its
    state. Named by topic too, so a view moved to another topic starts afresh."""
    return f"_o:{topic}:{partition}"


WORKERS_KEY = f"{PREFIX}workers"


def expiry_seconds(view: FeatureView) -> int | None:
    """How long an entity's state outlives its last write, or None to keep it."""
    if view.ttl_s is None:
        return None
    return view.ttl_s + (view.longest_window_s or 0)


def merge_state(
    layout: TileLayout,
    encoded: Mapping[str, Any],
    delta: Mapping[str, Any],
    watermark: float,
    last: float,
) -> tuple[dict[str, Any], list[str]]:
    """A field delta merged into an entity's stored (encoded) hash, the newest event
    time raised to `last`, and compacted at `watermark` (at least the state's own `w`):
    the changed fields (decoded) and the stored fields to delete. The one merge the
    worker and the backfill share; only the fields it touches are decoded."""
    current = {k: decode_field(encoded[k]) for k in delta if k in encoded}
    changed = layout.merge_fields(current, delta)
    stored_last = decode_field(encoded.get(LAST_EVENT_FIELD))
    changed[LAST_EVENT_FIELD] = last if stored_last is None else max(stored_last, last)
    stored_w = decode_field(encoded.get("w"))
    if not math.isfinite(watermark) and stored_w is None:
        return changed, []
    plan = layout.plan_compaction(encoded.keys() | changed.keys(), watermark, stored_w)
    read = {k: changed[k] if k in changed else decode_field(encoded.get(k)) for k in plan.read}
    changed.update(layout.apply_compaction(plan, read))
    for name in plan.delete:
        changed.pop(name, None)
    return changed, [name for name in plan.delete if name in encoded]


def view_layout(view: FeatureView) -> TileLayout:
    """The tile layout of a view (its plan's, built once)."""
    return view_plan(view).layout


# KEYS[1]: an entity key. ARGV: expected version ('' = no state yet), expiry seconds
# ('' = none), the number N of fields to delete, those N names, then field/value pairs.
# Returns the new version, or 0 (nothing written) when the version moved.
APPLY_ENTITY = """
local cur = redis.call('HGET', KEYS[1], '_n')
if (cur or '') ~= ARGV[1] then return 0 end
local nd = tonumber(ARGV[3])
local i = 4
while i < 4 + nd do
  local last = math.min(i + 999, 3 + nd)
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
while i <= #ARGV do
  local last = math.min(i + 999, #ARGV)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
local version = redis.call('HINCRBY', KEYS[1], '_n', 1)
if ARGV[2] ~= '' then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return version
"""

def queue_apply_entity(
    pipe: Any,
    sha: str,
    key: str,
    expected: str,
    expiry: int | None,
    deleted: Sequence[str],
    changed: Mapping[str, Any],
) -> None:
    """Queue one `APPLY_ENTITY` (loaded as `sha`) on a pipeline: change `key` if its
    version is still `expected` ('' = no state yet). The one packing of its arguments,
    for the worker and the backfill."""
    args: list[Any] = ["" if expiry is None else expiry, len(deleted), *deleted]
    for item in changed.items():
        args += item
    # Not pipe.evalsha: redis-py refuses that name in cluster pipelines.
    pipe.execute_command("EVALSHA", sha, 1, key, expected, *args)


# KEYS[1]: an entity key. ARGV[1]: a version. Deletes the key if it still has that
# version (nobody wrote it since); returns 1 if deleted.
DELETE_IF_VERSION = """
if redis.call('HGET', KEYS[1], '_n') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: N offset keys of one source, its stats key, then further hashes of the source
# (all one hash slot). ARGV: N, the N expected values ('' = absent), the N new values,
# then triples (op, field, value): op 'i' (HINCRBY) or 's' (HSET) on the stats hash, or
# 'n<k>' (HSETNX) on the k-th further hash. Returns 1, or 0 (nothing written) when an
# offset key moved (another worker committed the partition).
COMMIT_OFFSETS = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local cur = redis.call('GET', KEYS[i])
  if (cur or '') ~= ARGV[1 + i] then return 0 end
end
for i = 1, n do redis.call('SET', KEYS[i], ARGV[1 + n + i]) end
local stats = KEYS[n + 1]
local j = 2 + 2 * n
while j <= #ARGV do
  local op = ARGV[j]
  if op == 'i' then
    redis.call('HINCRBY', stats, ARGV[j + 1], ARGV[j + 2])
  elseif op == 's' then
    redis.call('HSET', stats, ARGV[j + 1], ARGV[j + 2])
  else
    redis.call('HSETNX', KEYS[n + 1 + tonumber(string.sub(op, 2))], ARGV[j + 1], ARGV[j + 2])
  end
  j = j + 3
end
return 1
"""
