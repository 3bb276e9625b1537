"""A broker that forgot its topics beside a Redis that remembers offsets: the worker refuses.

Seen with the memory-only Tansu broker restarted under a Redis that kept its data, or a
topic deleted and created again. Running on would skip the new events up to the
remembered offsets; the worker stops with one line instead (`up` starts clean itself).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest
import redis

from feature_service.embedded import EmbeddedStack
from feature_service.online.redis_layout import offset_key
from tests.integration.running_up import error_line, run_cli
from tests.integration.streaming import make_events, produce, write_definitions

pytestmark = pytest.mark.integration


def test_offsets_past_the_end_of_the_topic_stop_the_worker_with_one_line(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    definitions, registry = write_definitions(tmp_path, partitions=2)
    source = next(iter(registry.sources.values()))
    produce(stack, registry, make_events(50, seed=4))
    client = redis.Redis.from_url(stack.redis.url)
    # what a Redis that outlived its broker holds: offsets of events the topic never had
    client.set(offset_key(source.name, 1), orjson.dumps([10_000, 1_790_000_000.0]))
    env = {
        **stack.env(),
        "FS_DEFINITIONS": str(definitions),
        "FS_OFFLINE_URI": str(tmp_path / "offline"),
        "FS_CONSUMER_GROUP": f"fs-test-{uuid.uuid4().hex[:8]}",
    }
    line = error_line(run_cli("worker", env=env))
    assert f"{source.topic}[1]: Redis has events up to offset 10000" in line
    assert "the broker lost this topic" in line
    assert not (tmp_path / "offline").exists(), "nothing was written"
