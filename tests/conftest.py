"""Session fixtures: a real embedded stack (Tansu broker + Redis) per test process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from feature_service.embedded import EmbeddedStack

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """Broker and Redis as real processes, stopped at the end of the session."""
    with EmbeddedStack(tmp_path_factory.mktemp("stores")) as running:
        yield running


@pytest.fixture()
def redis_client(stack: EmbeddedStack) -> Iterator[object]:
    import redis

    client = redis.Redis.from_url(stack.redis.url)
    yield client
    client.close()
