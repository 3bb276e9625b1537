"""`GET /dlq`: the newest dead-lettered events of a source, with why (the UI's panel).

Read from the source's dead-letter topic (`<topic>.dlq`) with a consumer of no group,
like `feature-service dlq`; 503 when the broker does not answer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from feature_service.api.deps import State

router = APIRouter(tags=["operations"])


class DeadLetterOut(BaseModel):
    source: str
    partition: int | None = Field(description="Where the event was in the source topic")
    offset: int | None
    reason: str = Field(description="Why the worker refused it")
    value: str | None = Field(description="The raw event as sent (UTF-8, bad bytes replaced)")
    dlq_offset: int = Field(description="Its offset in the dead-letter topic")
    timestamp_ms: int | None = Field(description="When it was dead-lettered (epoch ms)")


class DeadLettersOut(BaseModel):
    dead_letters: list[DeadLetterOut]


@router.get(
    "/dlq",
    response_model=DeadLettersOut,
    responses={
        404: {"description": "Unknown source"},
        503: {"description": "The broker is unreachable"},
    },
)
async def dead_letters(
    state: State,
    source: Annotated[
        str | None, Query(max_length=256, description="Default: every source")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="The newest this many per source")] = 20,
) -> DeadLettersOut:
    """The newest dead-lettered events per source, oldest first: where each was in the
    source topic, why it was refused and its raw value."""
    from feature_service.stream.dead_letters import DeadLetterReader

    sources = state.registry.sources
    if source is not None and source not in sources:
        known = ", ".join(sources)
        raise HTTPException(404, f"unknown source {source!r} (known: {known})")
    if not state.settings.broker_url:
        raise HTTPException(503, "no broker configured (FS_BROKER_URL)")
    reader = DeadLetterReader(state.settings.kafka, timeout_s=5.0)
    letters = []
    try:
        for name in [source] if source is not None else list(sources):
            letters += await reader.latest(sources[name], limit)
    except Exception as exc:  # a broker that does not answer, however it fails
        raise HTTPException(503, f"broker unavailable: {type(exc).__name__}") from None
    return DeadLettersOut(dead_letters=[DeadLetterOut(**letter.as_dict()) for letter in letters])
