"""The online store on a real 3-node Redis Cluster (cluster mode of the same server binary).

The worker and the API talk to it with `FS_REDIS_CLUSTER=true`; the key layout keeps an
entity's views in one hash slot and a source's offsets and counters in one slot, which
the cluster enforces (a script or pipeline touching two slots fails with CROSSSLOT).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from redis.cluster import RedisCluster

from feature_service.aggregation.reference import brute_force
from feature_service.api.app import create_app
from feature_service.core.config import Settings
from feature_service.definitions import Registry
from feature_service.embedded import EmbeddedStack
from feature_service.embedded.redis_cluster import EmbeddedRedisCluster
from feature_service.offline.event_log import EventLog
from feature_service.online.redis_client import connect
from feature_service.online.redis_layout import (
    entity_key,
    entity_keys_pattern,
    offset_key,
    stats_key,
    view_start_key,
)
from feature_service.stream.backfill import BackfillReport, backfill_view
from tests.conditions import wait_for
from tests.integration.streaming import (
    assert_online_equals_brute_force,
    expected_events,
    make_events,
    offline_events,
    produce,
    start_worker,
    stats,
    write_definitions,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedisCluster]:
    with EmbeddedRedisCluster(tmp_path_factory.mktemp("cluster"), nodes=3) as running:
        yield running


@pytest.fixture()
def client(cluster: EmbeddedRedisCluster) -> Iterator[RedisCluster]:
    rc = RedisCluster.from_url(cluster.url)
    yield rc
    rc.close()


def test_cluster_has_three_primaries_sharing_all_slots(client: RedisCluster) -> None:
    primaries = client.get_primaries()
    assert len(primaries) == 3
    info = client.cluster_info(target_nodes=RedisCluster.RANDOM)
    assert info["cluster_state"] == "ok"
    assert int(info["cluster_slots_assigned"]) == 16384


def test_one_entitys_views_share_a_slot_and_entities_spread_over_nodes(
    client: RedisCluster,
) -> None:
    views = ["customer_txn", "customer_risk", "x:y"]
    nodes = set()
    for i in range(300):
        entity = f"c{i:04d}"
        slots = {client.keyslot(entity_key(view, entity)) for view in views}
        assert len(slots) == 1, entity
        nodes.add(client.nodes_manager.get_node_from_slot(slots.pop()).name)
    assert len(nodes) == 3, "entities land on every node"
    source_slots = {client.keyslot(offset_key("transactions", p)) for p in range(12)}
    source_slots.add(client.keyslot(stats_key("transactions")))
    assert len(source_slots) == 1


def test_hash_writes_and_reads_through_the_layout_helpers(client: RedisCluster) -> None:
    for i in range(50):
        client.hset(entity_key("a", f"e{i}"), mapping={"v": "1", "last": str(i)})
        client.hset(entity_key("b", f"e{i}"), mapping={"v": "1", "last": str(-i)})
    pipe = client.pipeline()
    for i in range(50):
        pipe.hget(entity_key("a", f"e{i}"), "last")
        pipe.hget(entity_key("b", f"e{i}"), "last")
    replies = pipe.execute()
    assert replies == [str(v).encode() for i in range(50) for v in (i, -i)]


def test_worker_and_api_on_the_cluster_count_every_event_once_across_a_kill(
    stack: EmbeddedStack, cluster: EmbeddedRedisCluster, client: RedisCluster, tmp_path: Path
) -> None:
    n = 6_000
    definitions, registry = write_definitions(tmp_path)
    view = next(iter(registry.feature_views.values()))
    offline = tmp_path / "offline"
    env = {"FS_REDIS_URL": cluster.url, "FS_REDIS_CLUSTER": "true"}
    produce(stack, registry, make_events(n, seed=31, customers=120))

    def processed() -> int:
        return stats(client, registry).get("events", 0)  # type: ignore[arg-type]

    worker = start_worker(stack, definitions, offline, "worker-cluster", env)
    wait_for(lambda: processed() >= 1_500, 120, "first events", worker)
    worker.kill()
    worker = start_worker(stack, definitions, offline, "worker-cluster", env)
    try:
        wait_for(lambda: processed() >= n, 180, "all events", worker)
    finally:
        worker.stop()
    assert processed() == n
    log = offline_events(registry, offline)
    assert len(log) == n and not log.duplicated(["_partition", "_offset"]).any()
    expected = expected_events(view, log)
    newest = float(log["event_ts"].max())
    sample = dict(random.Random(2).sample(sorted(expected.items()), 25))
    assert assert_online_equals_brute_force(client, view, sample, [newest]) > 0  # type: ignore[arg-type]

    settings = Settings(
        redis_url=cluster.url, redis_cluster=True, broker_url=stack.broker.bootstrap
    )
    entities = sorted(sample)
    with TestClient(create_app(settings, registry)) as api:
        response = api.post(
            "/get-online-features",
            json={
                "features": [f"{view.name}:n_1h"],
                "entities": {"customer_id": [*entities, "nobody"]},
                "as_of": newest,
            },
        )
        assert api.get("/health").json()["dependencies"]["redis"]["status"] == "ok"
        population = api.get(f"/feature-views/{view.name}/entities", params={"limit": 1000})
    assert population.status_code == 200, population.text
    assert sorted(population.json()["entities"]) == sorted(expected), "every node is scanned"
    assert response.status_code == 200, response.text
    counts = response.json()["results"][1]
    assert counts["statuses"][-1] == "NOT_FOUND"
    index = [f.name for f in view.features].index("n_1h")
    want = [brute_force(expected[c], newest, view.features[index], index) for c in entities]
    assert counts["values"][:-1] == want

    # A backfill on the cluster (its entities span every slot): with the states gone and
    # the stream marked as having started at the committed offsets, the log alone
    # rebuilds them exactly.
    source = view.source.name
    for key in client.scan_iter(match=entity_keys_pattern(view.name), count=1000):
        client.delete(key)
    committed = {
        str(p): orjson.loads(raw)[0]
        for p in range(view.source.partitions)
        if (raw := client.get(offset_key(source, p))) is not None
    }
    client.delete(view_start_key(view.name, source))
    client.hset(view_start_key(view.name, source), mapping=committed)
    report = asyncio.run(backfill_on(cluster, registry, view.name, offline))
    assert report.events + report.late == n and report.entities == len(expected), report
    assert assert_online_equals_brute_force(client, view, sample, [newest]) > 0  # type: ignore[arg-type]


async def backfill_on(
    cluster: EmbeddedRedisCluster, registry: Registry, view: str, offline: Path
) -> BackfillReport:
    redis = connect(cluster.url, cluster=True)
    try:
        return await backfill_view(registry, view, redis, EventLog(str(offline)))
    finally:
        await redis.aclose()
