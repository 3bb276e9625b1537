"""`GET /status`: what the stream pipeline is doing, per source and view (the UI's numbers)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from feature_service.api.deps import State
from feature_service.api.observability import pipeline_status

router = APIRouter(tags=["operations"])


class PartitionOut(BaseModel):
    partition: int
    committed: int | None
    end_offset: int | None
    lag: int | None
    newest_event_ts: float | None


class SourceOut(BaseModel):
    source: str
    topic: str
    views: list[str]
    format: str = Field(
        default="json",
        description="How the topic's events are written: json, avro, protobuf or jsonschema",
    )
    events: int
    dlq: int
    late: dict[str, int]
    skipped: dict[str, int] = Field(
        description="Per view: accepted events it left out because their join key for it "
        "is null or empty (they count in the source's other views)"
    )
    flushes: int
    last_flush_ms: float | None
    last_commit_ts: float | None = Field(
        description="The worker's wall clock at its newest commit: the pipeline moves"
    )
    newest_event_ts: float | None = Field(description="The newest event time (epoch seconds)")
    freshness_s: float | None = Field(
        description="Now minus the newest event time (a replayed sample: its age)"
    )
    lag: int | None
    events_per_s: float | None
    workers: int
    partitions: list[PartitionOut]


class WorkerOut(BaseModel):
    id: str
    host: str
    pid: int
    seen_s_ago: float
    started: float
    partitions: list[str]
    sources: dict[str, dict[str, float]]
    failing: dict[str, Any] | None = None


class StatusOut(BaseModel):
    at: float
    broker_error: str | None
    sources: list[SourceOut]
    workers: list[WorkerOut]


@router.get(
    "/status",
    response_model=StatusOut,
    responses={503: {"description": "Redis is unreachable"}},
)
async def status(request: Request, state: State) -> StatusOut:
    """Per source: events, dead-lettered, late and skipped (per view: no join key)
    counts, the newest event time and its age, the last commit, events/s, consumer lag
    per partition, and the live workers."""
    try:
        current = await pipeline_status(request, state)
    except Exception as exc:
        raise HTTPException(503, f"online store unavailable: {type(exc).__name__}") from None
    return StatusOut.model_validate(current.as_dict())
