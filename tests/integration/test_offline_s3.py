"""The offline event log on an S3-compatible endpoint: moto's server on a loopback port.

moto's server mode is a real HTTP server speaking the S3 protocol (in memory), so s3fs,
fsspec and botocore run their real code paths; only the storage behind it is moto's.
Settings reach s3fs as in production: `FS_OFFLINE_URI=s3://bucket/prefix` plus the
standard `AWS_*` variables (here `AWS_ENDPOINT_URL` points at the loopback server).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from feature_service.embedded import EmbeddedStack
from feature_service.embedded.processes import free_port
from feature_service.offline.event_log import EventLog
from tests.conditions import wait_for
from tests.integration.streaming import (
    expected_events,
    make_events,
    produce,
    start_worker,
    stats,
    write_definitions,
)

pytestmark = pytest.mark.integration

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "test-key",
    "AWS_SECRET_ACCESS_KEY": "test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture()
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; AWS_* settings in the environment, as a pod gets them."""
    import fsspec

    for name, value in {**S3_ENV, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(name, value)
    name = f"offline-{uuid.uuid4().hex[:10]}"
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir(name)
    return name


def test_event_log_writes_lists_reads_and_removes_on_s3(bucket: str, tmp_path: Path) -> None:
    _, registry = write_definitions(tmp_path)
    source = next(iter(registry.sources.values()))
    log = EventLog(f"s3://{bucket}/offline")
    day = 1_790_000_000.0
    frame = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c1"],
            "amount": [1.5, None, 3.0],
            "category": ["fuel", "grocery", "fuel"],
            "online": [True, False, True],
            "event_ts": [day, day + 60, day + 86400],  # two dates
            "_partition": np.int32(2),
            "_offset": np.array([10, 11, 12], dtype=np.int64),
            "_watermark": [-np.inf, day, day + 60],
        }
    )
    written = log.write_batch(source, 2, 10, frame)
    assert len(written) == 2 and all(p.startswith(f"{bucket}/offline/events/") for p in written)
    log.write_batch(source, 2, 13, frame.assign(_offset=[13, 14, 15]))

    back = log.read(source).sort_values("_offset")
    assert back["_offset"].tolist() == [10, 11, 12, 13, 14, 15]
    assert back["amount"].isna().tolist() == [False, True, False] * 2

    # a replay with other batch boundaries overlaps the first batch: each offset once
    log.write_batch(source, 2, 11, frame.iloc[1:].assign(_offset=[11, 12]))
    assert sorted(log.read(source)["_offset"]) == [10, 11, 12, 13, 14, 15]
    other = EventLog(f"s3://{bucket}/offline")  # another process sees the same files
    assert len(other.files(source.name)) == 6


def test_worker_writes_the_offline_log_to_s3_exactly_once(
    stack: EmbeddedStack, bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    n = 4_000
    definitions, registry = write_definitions(tmp_path)
    view = next(iter(registry.feature_views.values()))
    client = redis.Redis.from_url(stack.redis.url)
    uri = f"s3://{bucket}/offline"
    env = {**S3_ENV, "AWS_ENDPOINT_URL": s3_endpoint, "FS_OFFLINE_URI": uri}
    produce(stack, registry, make_events(n, seed=4))
    worker = start_worker(stack, definitions, tmp_path / "local", "worker-s3", env)
    try:
        wait_for(lambda: stats(client, registry).get("events", 0) >= n, 180, "events", worker)
    finally:
        worker.stop()
    log = EventLog(uri).read(next(iter(registry.sources.values())))
    assert len(log) == n
    assert not log.duplicated(["_partition", "_offset"]).any()
    assert sum(len(v) for v in expected_events(view, log).values()) > 0
    assert not (tmp_path / "local").exists(), "nothing went to the local disk"
