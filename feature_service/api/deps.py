"""What request handlers depend on: settings, registry and clients, via `Depends`.

API keys, their scopes and the body cap are checked before a handler runs, and before
the body is read, by `api.access`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated

import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import Depends, HTTPException, Request

from feature_service.core.config import Settings
from feature_service.core.kafka import KafkaAuthError, check_credentials
from feature_service.definitions import Registry


@dataclass
class ApiState:
    """Built once at start-up, shared by every request."""

    settings: Settings
    registry: Registry
    redis: aioredis.Redis
    refused_definitions: str = ""  # why the definitions on disk are not served ("" if they are)
    _producer: AIOKafkaProducer | None = None
    _producer_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def producer(self) -> AIOKafkaProducer:
        """The producer for pushes, started on first use (the API can start before the
        broker, and lookups never need it). Raises HTTP 503 if the broker is down."""
        async with self._producer_lock:
            if self._producer is None:
                if not self.settings.broker_url:
                    raise HTTPException(503, "no broker configured (FS_BROKER_URL)")
                kafka = self.settings.kafka
                try:  # wrong credentials say so (a 503 naming them), not "unavailable"
                    await check_credentials(kafka, timeout_s=5.0)
                except KafkaAuthError as exc:
                    raise HTTPException(503, str(exc)) from None
                producer = AIOKafkaProducer(
                    **kafka.aiokafka_kwargs(),
                    acks="all",
                    linger_ms=1,
                    request_timeout_ms=5000,
                )
                try:
                    await asyncio.wait_for(producer.start(), timeout=5.0)
                except (KafkaError, OSError, TimeoutError) as exc:
                    await producer.stop()
                    raise HTTPException(503, f"broker unavailable: {type(exc).__name__}") from None
                self._producer = producer
            return self._producer

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        await self.redis.aclose()


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(get_state)]
