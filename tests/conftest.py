"""Session fixtures: a real embedded stack (broker + Redis) per test process.

The broker is Tansu unless `FS_TEST_BROKER=kafka` (`make test-kafka`): then a real
Apache Kafka broker, and the tests marked `broker` are the ones that run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from feature_service.embedded import EmbeddedStack

ROOT = Path(__file__).resolve().parent.parent
TEST_BROKER = os.environ.get("FS_TEST_BROKER", "tansu")
if TEST_BROKER not in ("tansu", "kafka"):
    raise pytest.UsageError(f"FS_TEST_BROKER must be tansu or kafka, not {TEST_BROKER!r}")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """Broker and Redis as real processes, stopped at the end of the session."""
    stores = tmp_path_factory.mktemp("stores")
    with EmbeddedStack(stores, broker=TEST_BROKER) as running:  # type: ignore[arg-type]
        yield running


@pytest.fixture()
def redis_client(stack: EmbeddedStack) -> Iterator[object]:
    import redis

    client = redis.Redis.from_url(stack.redis.url)
    yield client
    client.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that uses the session's broker (the `stack` fixture) is broker-facing:
    `make test-kafka` (`-m broker`, `FS_TEST_BROKER=kafka`) runs it on real Kafka."""
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.broker)
        if item.get_closest_marker("kafka_only") is not None:
            item.add_marker(pytest.mark.broker)
            if TEST_BROKER != "kafka":
                item.add_marker(pytest.mark.skip(reason="needs Apache Kafka: make test-kafka"))
