"""`GET /health`: each dependency's state; 503 when one the API needs is down.

Dependencies: `redis` (ping), `broker` (TCP connect), and `worker`: the stream workers'
heartbeats and lag (`observability.pipeline`). A missing worker makes the status
`degraded` but not a 503: lookups still answer from the stored state, and a readiness
probe should not take the API out of service because the worker is restarting.

`definitions`: `refused` (with the reason) when the definitions on disk change the state
layout of a view with state (`online.view_layouts`), or do not load at all (each file,
path and reason, `definitions.watch`); the API then serves the previous ones, or, when
it was started beside such files, the last definitions a worker accepted
(`online.accepted_definitions`), so the status is `degraded` but not a 503.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from feature_service.api.deps import ApiState, State
from feature_service.api.observability import pipeline_status
from feature_service.observability.prometheus import REDIS_ERRORS

router = APIRouter(tags=["operations"])


class DependencyHealth(BaseModel):
    status: Literal["ok", "down", "failing", "not configured", "unknown"]
    detail: str = ""
    lag: int | None = None  # worker: events in the topics not yet in the online state
    freshness_s: float | None = None  # worker: age of the newest event in the state


class DefinitionsHealth(BaseModel):
    status: Literal["ok", "refused"]
    detail: str = ""


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    dependencies: dict[str, DependencyHealth]
    definitions: DefinitionsHealth


async def _redis(state: ApiState) -> DependencyHealth:
    try:
        await asyncio.wait_for(state.redis.ping(), timeout=1.0)
        return DependencyHealth(status="ok")
    except Exception as exc:  # any failure to answer is "down", with the reason
        REDIS_ERRORS.inc()
        return DependencyHealth(status="down", detail=f"{type(exc).__name__}: {exc}")


async def _broker(state: ApiState) -> DependencyHealth:
    if not state.settings.broker_url:
        return DependencyHealth(status="not configured")
    try:
        host, port = state.settings.kafka.first_address
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        writer.close()
        await writer.wait_closed()
        return DependencyHealth(status="ok")
    except (OSError, TimeoutError, ValueError) as exc:
        return DependencyHealth(status="down", detail=f"{type(exc).__name__}: {exc}")


async def _worker(request: Request, state: ApiState) -> DependencyHealth:
    try:
        current = await pipeline_status(request, state)
    except Exception as exc:
        return DependencyHealth(status="unknown", detail=f"cannot read Redis: {type(exc).__name__}")
    if not current.sources:
        return DependencyHealth(status="not configured", detail="no source has feature views")
    idle = [s.source for s in current.sources if s.workers == 0]
    lags = [s.lag for s in current.sources]
    lag = None if any(x is None for x in lags) else sum(x for x in lags if x is not None)
    fresh = [s.freshness_s for s in current.sources if s.freshness_s is not None]
    freshness = max(fresh) if fresh else None
    lag_text = "unknown" if lag is None else str(lag)
    failing = [w for w in current.workers if w.failing]
    if failing:
        first = failing[0].failing or {}
        return DependencyHealth(
            status="failing",
            detail=f"{len(failing)} worker(s) failing for {first.get('attempts')} attempts: "
            f"{first.get('error')}; lag {lag_text}",
            lag=lag,
            freshness_s=freshness,
        )
    if idle:
        return DependencyHealth(
            status="down",
            detail=f"no live worker consumes {', '.join(idle)}; lag {lag_text}",
            lag=lag,
            freshness_s=freshness,
        )
    return DependencyHealth(
        status="ok",
        detail=f"{len(current.workers)} live worker(s); lag {lag_text} events",
        lag=lag,
        freshness_s=freshness,
    )


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(request: Request, response: Response, state: State) -> Health:
    """Redis, broker and worker state; 503 when Redis or the broker is down."""
    redis_health, broker_health, worker_health = await asyncio.gather(
        _redis(state), _broker(state), _worker(request, state)
    )
    deps = {"redis": redis_health, "broker": broker_health, "worker": worker_health}
    if redis_health.status == "down" or broker_health.status == "down":
        response.status_code = 503
    refused = state.refused_definitions
    definitions = DefinitionsHealth(status="refused" if refused else "ok", detail=refused)
    healthy = all(d.status in ("ok", "not configured") for d in deps.values()) and not refused
    return Health(
        status="ok" if healthy else "degraded", dependencies=deps, definitions=definitions
    )


class Liveness(BaseModel):
    status: Literal["ok"]


@router.get("/health/live", response_model=Liveness)
async def live() -> Liveness:
    """The process serves HTTP (a liveness probe): dependencies are not asked, so an
    outage of Redis or the broker makes replicas unready (`/health`), not restarted.

    Deliberately no work and no await: it is answered on the event loop that serves the
    lookups, so a loop that is stuck makes this probe time out, which is what a
    supervisor (kubelet, `feature-service up`) restarts the process on."""
    return Liveness(status="ok")
