"""Where online state lives in Redis, and how a feature view maps onto its keys.

Keys (all prefixed `fs:`; the part in braces is the Redis Cluster hash tag, so the keys
sharing it live in one hash slot):

- `fs:v:{<entity id>}:<view>` (string): the view's state of one entity, in the format
  of `aggregation.state` (its retained events packed, its version first, the newest
  event time, the lifetime base, and per `<topic>:<partition>` of the view's source
  the next offset whose events it holds; a backfill marks what it wrote). A busy
  entity's value (format ``F3``) holds only its newest events raw, and per-hop
  aggregates below its compaction horizon, so its size follows windows and hops. Writers
  compare-and-set on the version. All views of one entity id share a slot, so a
  lookup of one entity reads one slot. Engine v1 kept a hash of tile fields here;
  such a key is refused (`online.view_layouts.stale_state_message`).
- `fs:o:{<source>}:<partition>` (string): JSON `[next offset, watermark]`, how far the
  source's state (all entities) reflects that partition of its topic.
- `fs:stats:{<source>}` (hash): counters `events`, `dlq`, `late:<view>`, `flushes`
  (written with the offsets they count), and gauges `last_flush_ms`,
  `newest_event_ts:<partition>`. Same slot as the source's offset keys.
- `fs:vstart:{<source>}:<view>` (hash): partition -> first offset the stream folded
  into the view (HSETNX with every offset commit, so it keeps the first); events below
  it reach the view only through `stream.backfill`. Same slot as the offsets.
  An entity hash a backfill wrote also has the field `bf`.
- `fs:layouts:{<source>}` (hash): view -> JSON record of the state layout its entity
  hashes are written with (`{"v": fingerprint, "levels": [...], "features": [[name,
  aggregation, column, window_s, hop_s, where], ...]}`). Set (HSETNX) by a worker for
  every view before it serves them; `validate`, `apply`, the worker and the API refuse
  definitions that change a recorded layout (`online.view_layouts`). Same slot as the
  offsets. A view deleted for good, whose name is to be reused with another layout,
  needs its entity keys and this field deleted by hand.
- `fs:accepted:{<consumer group>}` (string): JSON of the definitions files a worker of
  the deployment last accepted, run by a worker or API started beside files that do
  not load (`online.accepted_definitions`).
- `fs:workers` (hash): worker id (`host:pid`) -> JSON heartbeat of a running worker
  (`observability.worker_monitor`): when it was last seen, per source its events and
  events/s; entries of workers gone for long are pruned by the others.

Writes go through two Lua scripts (standalone and Cluster alike): `APPLY_ENTITIES`
sets entities' states, each if its version is still the one the writer read (many
entities per call on a standalone Redis, one per call on a Cluster: `apply_states`),
and `COMMIT_OFFSETS` moves a source's offset keys, if each still holds what the writer
read, together with its counters. The stream worker applies every entity of a flush,
then commits the offsets (see `stream.source_processor` for why that is exactly once).
Another writer of view state (e.g. a backfill) must use `apply_states` too, so the
worker's compare-and-set sees its writes.

An entity key expires (wall clock, from its last write) after the view's ttl plus its
longest window, so idle entities do not pile up; a view without ttl keeps its keys.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from feature_service.aggregation.state import StateLayout
from feature_service.definitions import FeatureView
from feature_service.plan import view_plan

PREFIX = "fs:"


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
    """Hash: view -> the recorded layout of its state (`online.view_layouts`)."""
    return f"{PREFIX}layouts:{{{source}}}"


def stats_key(source: str) -> str:
    return f"{PREFIX}stats:{{{source}}}"


def applied_mark(topic: str, partition: int) -> str:
    """The name under which an entity's state keeps the next offset of `topic`'s
    `partition` already in it. Named by topic too, so a view moved to another topic
    starts afresh."""
    return f"{topic}:{partition}"


WORKERS_KEY = f"{PREFIX}workers"


def expiry_seconds(view: FeatureView) -> int | None:
    """How long an entity's state outlives its last write, or None to keep it."""
    if view.ttl_s is None:
        return None
    return view.ttl_s + (view.longest_window_s or 0)


def view_layout(view: FeatureView) -> StateLayout:
    """The state layout of a view (its plan's, built once)."""
    return view_plan(view).layout


async def read_states(redis: Redis, keys: list[str]) -> list[bytes | None]:
    """The stored values of entity `keys`, in order (None where absent), in one round
    trip: MGETs of `APPLY_CHUNK` keys on a standalone Redis; on a Cluster one GET per
    key in a pipeline (an MGET across hash slots is refused there with CROSSSLOT).

    The one read of entity states for the worker, the backfill and the lookups. A key
    of another type (an engine v1 hash) reads as None, as MGET answers it; readers that
    must tell the two apart check the absent keys (`stale_keys`).
    """
    if not keys:
        return []
    cluster = isinstance(redis, RedisCluster)
    if not cluster and len(keys) <= APPLY_CHUNK:
        return cast(list[bytes | None], await redis.mget(keys))
    async with redis.pipeline(transaction=False) as pipe:
        if cluster:
            for key in keys:
                pipe.get(key)
        else:
            for begin in range(0, len(keys), APPLY_CHUNK):
                pipe.mget(keys[begin : begin + APPLY_CHUNK])
        replies = await pipe.execute(raise_on_error=False)
    for reply in replies:
        if isinstance(reply, Exception) and not str(reply).startswith("WRONGTYPE"):
            raise reply
    if cluster:
        return [None if isinstance(r, Exception) else r for r in replies]
    return [value for chunk in replies for value in chunk]


async def stale_keys(redis: Redis, keys: list[str]) -> list[str]:
    """Those of `keys`, which `read_states` found absent, that hold a value of another
    type (an engine v1 hash): one more round trip, only for absent entities."""
    if not keys:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.exists(key)
        found = await pipe.execute()
    return [key for key, exists in zip(keys, found, strict=True) if exists]


# KEYS: entity keys (of one hash slot, or any on a standalone Redis). ARGV: expiry
# seconds ('' = none), then per key its expected version and its new value. Returns per
# key 1 (written) or 0 (its version moved: not written). The new value's first 20 bytes
# are its version (`aggregation.state`).
APPLY_ENTITIES = """
local ok = {}
for i, key in ipairs(KEYS) do
  local cur = redis.call('GETRANGE', key, 0, 19)
  if cur == ARGV[2 * i] then
    if ARGV[1] ~= '' then
      redis.call('SET', key, ARGV[2 * i + 1], 'EX', ARGV[1])
    else
      redis.call('SET', key, ARGV[2 * i + 1])
    end
    ok[i] = 1
  else
    ok[i] = 0
  end
end
return ok
"""
APPLY_CHUNK = 500
"""Entities per `APPLY_ENTITIES` call: each call blocks Redis for its duration."""


@dataclass(frozen=True)
class StateWrite:
    """One entity state to set if its stored version is still `expected`."""

    key: str
    expected: str  # '' when the entity had no state
    value: bytes  # its first 20 bytes: the new version (`aggregation.state`)


async def apply_states(
    redis: Redis, sha: str, writes: Sequence[StateWrite], expiry: int | None
) -> set[int]:
    """Compare-and-set `writes` with `APPLY_ENTITIES` (loaded as `sha`), all in one
    pipeline: chunks of `APPLY_CHUNK` keys on a standalone Redis, one key per call on a
    Cluster (a script's keys must share a hash slot). Returns the indexes of the writes
    whose version had moved (nothing written for them). `expiry`: seconds, or None.

    The one write of entity states, for the worker and the backfill, so each one's
    compare-and-set sees the other's writes. A script error (NOSCRIPT after a Redis
    restart) is raised."""
    if not writes:
        return set()
    per_call = 1 if isinstance(redis, RedisCluster) else APPLY_CHUNK
    ttl = "" if expiry is None else expiry
    async with redis.pipeline(transaction=False) as pipe:
        for begin in range(0, len(writes), per_call):
            chunk = writes[begin : begin + per_call]
            args: list[Any] = [ttl]
            for w in chunk:
                args += (w.expected, w.value)
            # Not pipe.evalsha: redis-py refuses that name in cluster pipelines.
            pipe.execute_command("EVALSHA", sha, len(chunk), *(w.key for w in chunk), *args)
        replies = await pipe.execute(raise_on_error=False)
    errors = [reply for reply in replies if isinstance(reply, Exception)]
    if errors:  # a NOSCRIPT first: the caller loads its scripts again
        raise next((e for e in errors if isinstance(e, NoScriptError)), errors[0])
    return {i for i, ok in enumerate(ok for chunk in replies for ok in chunk) if not ok}


# KEYS[1]: an entity key. ARGV[1]: a version. Deletes the key if it still has that
# version (nobody wrote it since); returns 1 if deleted.
DELETE_IF_VERSION = """
if redis.call('GETRANGE', KEYS[1], 0, 19) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
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
