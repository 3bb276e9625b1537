"""Async Redis clients for the service, with command packing done in C by hiredis.

redis-py's asyncio connection packs commands in Python (it uses hiredis only to parse
replies); a worker flush sends ~300k fields and spent ~2 s of every 4 packing them.
`HiredisPackedConnection` packs with `hiredis.pack_command`, as redis-py's synchronous
connection already does.

Connections come from a *blocking* pool of at most `max_connections`
(`FS_REDIS_MAX_CONNECTIONS`): a request that finds every connection busy waits up to
`pool_timeout_s` (`FS_REDIS_POOL_TIMEOUT_S`) for one to come back, then fails with
redis' `ConnectionError` (the API's 503). redis-py's default asyncio pool instead fails
at once past 100 connections in use (`MaxConnectionsError`), which turned a burst of
concurrent lookups into 503s while Redis was healthy.

For a Redis Cluster (`FS_REDIS_CLUSTER=true`), `connect` returns redis-py's cluster
client, which discovers the nodes from the one in the URL and routes each command to
the node of its key's hash slot; its connections pack with hiredis too. redis-py has no
blocking pool for the cluster client: it keeps at most `max_connections` per node and
fails fast beyond that, so size `FS_REDIS_MAX_CONNECTIONS` for the peak concurrency.

>>> client = connect("redis://127.0.0.1:6379/0")  # doctest: +SKIP
>>> client = connect("redis://redis-cluster:6379/0", cluster=True)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import DataError

from feature_service.core.config import Settings

_DEFAULTS = Settings.model_fields  # the settings own the defaults, for every caller


class HiredisPackedConnection(aioredis.Connection):
    """An asyncio connection whose commands are packed by hiredis."""

    def pack_command(self, *args: Any) -> list[bytes]:
        name = args[0]
        if isinstance(name, str):
            args = (*name.encode().split(), *args[1:])
        elif b" " in name:
            args = (*name.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(str(exc)) from None


def connect(
    url: str,
    cluster: bool = False,
    *,
    max_connections: int = _DEFAULTS["redis_max_connections"].default,
    pool_timeout_s: float = _DEFAULTS["redis_pool_timeout_s"].default,
    **kwargs: Any,
) -> aioredis.Redis:
    """An async client for `url` (redis:// or rediss://); a cluster client if `cluster`.

    Both clients offer the commands the service uses (pipelines without transactions,
    EVALSHA with keys of one slot), so callers do not tell them apart. `kwargs` go to
    every connection (e.g. `socket_timeout`).
    """
    if cluster:
        client = RedisCluster.from_url(url, max_connections=max_connections, **kwargs)
        manager = client.nodes_manager
        if manager.connection_kwargs.get("connection_class") is aioredis.Connection:
            manager.connection_kwargs["connection_class"] = HiredisPackedConnection
            for node in manager.startup_nodes.values():
                node.connection_class = HiredisPackedConnection
        return client  # type: ignore[return-value]
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=pool_timeout_s, **kwargs
    )
    if pool.connection_class is aioredis.Connection:
        pool.connection_class = HiredisPackedConnection
    return aioredis.Redis(connection_pool=pool)
