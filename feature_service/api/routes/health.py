"""`GET /health`: each dependency's state; 503 when one the API needs is down."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel

from feature_service.api.deps import ApiState, State

router = APIRouter(tags=["operations"])


class DependencyHealth(BaseModel):
    status: Literal["ok", "down", "not configured"]
    detail: str = ""


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    dependencies: dict[str, DependencyHealth]


async def _redis(state: ApiState) -> DependencyHealth:
    try:
        await asyncio.wait_for(state.redis.ping(), timeout=1.0)
        return DependencyHealth(status="ok")
    except Exception as exc:  # any failure to answer is "down", with the reason
        return DependencyHealth(status="down", detail=f"{type(exc).__name__}: {exc}")


async def _broker(state: ApiState) -> DependencyHealth:
    url = state.settings.broker_url
    if not url:
        return DependencyHealth(status="not configured")
    host, _, port = url.split(",")[0].rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1.0)
        writer.close()
        await writer.wait_closed()
        return DependencyHealth(status="ok")
    except (OSError, TimeoutError, ValueError) as exc:
        return DependencyHealth(status="down", detail=f"{type(exc).__name__}: {exc}")


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(response: Response, state: State) -> Health:
    """Broker and Redis reachability; 503 when either is down."""
    redis_health, broker_health = await asyncio.gather(_redis(state), _broker(state))
    deps = {"redis": redis_health, "broker": broker_health}
    down = any(d.status == "down" for d in deps.values())
    if down:
        response.status_code = 503
    return Health(status="degraded" if down else "ok", dependencies=deps)
