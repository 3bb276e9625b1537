"""The embedded local stack: real broker and Redis processes for `make run` and tests."""

from feature_service.embedded.broker import EmbeddedBroker
from feature_service.embedded.kafka import EmbeddedKafka
from feature_service.embedded.processes import ManagedProcess, StackError
from feature_service.embedded.redis_server import EmbeddedRedis
from feature_service.embedded.stack import EmbeddedStack

__all__ = [
    "EmbeddedBroker",
    "EmbeddedKafka",
    "EmbeddedRedis",
    "EmbeddedStack",
    "ManagedProcess",
    "StackError",
]
