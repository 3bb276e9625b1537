"""Async Redis clients for the service, with command packing done in C by hiredis.

redis-py's asyncio connection packs commands in Python (it uses hiredis only to parse
replies); a worker flush sends ~300k fields and spent ~2 s of every 4 packing them.
`HiredisPackedConnection` packs with `hiredis.pack_command`, as redis-py's synchronous
connection already does.

For a Redis Cluster (`FS_REDIS_CLUSTER=true`), `connect` returns redis-py's cluster
client, which discovers the nodes from the one in the URL and routes each command to
the node of its key's hash slot; its connections pack with hiredis too.

>>> client = connect("redis://127.0.0.1:6379/0")  # doctest: +SKIP
>>> client = connect("redis://redis-cluster:6379/0", cluster=True)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import DataError


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


def connect(url: str, cluster: bool = False, **kwargs: Any) -> aioredis.Redis:
    """An async client for `url` (redis:// or rediss://); a cluster client if `cluster`.

    Both clients offer the commands the service uses (pipelines without transactions,
    EVALSHA with keys of one slot), so callers do not tell them apart.
    """
    if cluster:
        client = RedisCluster.from_url(url, **kwargs)
        manager = client.nodes_manager
        if manager.connection_kwargs.get("connection_class") is aioredis.Connection:
            manager.connection_kwargs["connection_class"] = HiredisPackedConnection
            for node in manager.startup_nodes.values():
                node.connection_class = HiredisPackedConnection
        return client  # type: ignore[return-value]
    pool = aioredis.ConnectionPool.from_url(url, **kwargs)
    if pool.connection_class is aioredis.Connection:
        pool.connection_class = HiredisPackedConnection
    return aioredis.Redis(connection_pool=pool)
