"""`GET /metrics`: Prometheus text of this API process and of the whole pipeline."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from feature_service.api.deps import State
from feature_service.api.observability import pipeline_status
from feature_service.observability.pipeline import PipelineStatus
from feature_service.observability.prometheus import PipelineCollector

router = APIRouter(tags=["operations"])
log = logging.getLogger(__name__)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics(request: Request, state: State) -> Response:
    """API latency histograms and request counts, and the pipeline's counters, freshness
    and lag (see `observability.prometheus`). Answers 200 with `fs_redis_up 0` when
    Redis is down, so the scrape itself tells."""
    status: PipelineStatus | None
    try:
        status = await pipeline_status(request, state)
    except Exception as exc:
        log.warning("metrics: pipeline numbers unavailable: %s", exc)
        status = None
    pipeline = CollectorRegistry(auto_describe=False)
    pipeline.register(PipelineCollector(status))
    body = generate_latest(REGISTRY) + generate_latest(pipeline)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
