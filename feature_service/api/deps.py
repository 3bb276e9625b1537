"""What request handlers depend on: settings, registry and clients, via `Depends`.

API keys: when `FS_API_KEYS` lists keys, every data endpoint (lookups, push, registry,
historical features) needs one, sent as `X-API-Key: <key>` or
`Authorization: Bearer <key>`; without a valid key the answer is 401. `/health`,
`/metrics`, the docs and the UI stay open so probes and scrapers need no secret.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated

import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

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

_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")
_bearer = HTTPBearer(auto_error=False, description="an API key as a bearer token")


def require_api_key(
    state: State,
    header_key: Annotated[str | None, Depends(_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the request carries one of `FS_API_KEYS` (no-op when none are set)."""
    accepted = state.settings.api_keys
    if not accepted:
        return
    given = header_key or (bearer.credentials if bearer else None)
    if given is None:
        raise HTTPException(
            401, "missing API key: send X-API-Key", headers={"WWW-Authenticate": "Bearer"}
        )
    if not key_accepted(accepted, given):
        raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})


def key_accepted(accepted: Sequence[str], given: str | None) -> bool:
    """Whether `given` is one of the `accepted` keys (compared in constant time)."""
    if given is None:
        return False
    return any(secrets.compare_digest(given.encode(), key.encode()) for key in accepted)
