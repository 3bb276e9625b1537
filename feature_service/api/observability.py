"""Per-request observability of the API: request id, latency metrics, JSON access log.

`RequestObservability` is a plain ASGI middleware (cheaper than Starlette's
`BaseHTTPMiddleware`, a few microseconds a request). For each HTTP request it:

- takes the `X-Request-ID` header (letters, digits, `._:-`, at most 128 characters) or
  makes a new id (a random per-process prefix and a counter: unique, and ~20 times
  cheaper than a uuid4), exposes it to the logs (`observability.logs.REQUEST_ID`) and
  sends it back as `X-Request-ID`;
- observes the latency and status under the route's path template
  (`observability.prometheus`);
- logs one access line at INFO (WARNING for 5xx): method, path, status, duration_ms.

`pipeline_reader(request)` is the per-app reader of the pipeline's numbers that
`/status`, `/metrics` and `/health` share (end offsets cached for a second).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from feature_service.api.deps import ApiState
from feature_service.observability.logs import REQUEST_ID
from feature_service.observability.pipeline import (
    BrokerOffsets,
    PipelineStatus,
    read_pipeline_status,
)
from feature_service.observability.prometheus import LATENCY, REDIS_ERRORS, REQUESTS

log = logging.getLogger("feature_service.api.access")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_ID_PREFIX = os.urandom(6).hex()
_ids = itertools.count(1)
# Metric children by label values: `labels()` costs a lock and a tuple each time.
_latency: dict[tuple[str, str], Any] = {}
_requests: dict[tuple[str, str, int], Any] = {}


def _new_request_id() -> str:
    return f"{_ID_PREFIX}-{next(_ids)}"


class RequestObservability:
    """ASGI middleware: request id in and out, metrics, access log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        request_id = given if given and _VALID_ID.match(given) else _new_request_id()
        id_header = (b"x-request-id", request_id.encode())
        token = REQUEST_ID.set(request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            latency = _latency.get((endpoint, method))
            if latency is None:
                latency = _latency[(endpoint, method)] = LATENCY.labels(endpoint, method)
            latency.observe(elapsed)
            count = _requests.get((endpoint, method, status))
            if count is None:
                count = REQUESTS.labels(endpoint, method, str(status))
                _requests[(endpoint, method, status)] = count
            count.inc()
            level = logging.WARNING if status >= 500 else logging.INFO
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "%s %s %d",
                    method,
                    scope["path"],
                    status,
                    extra={
                        "method": method,
                        "path": scope["path"],
                        "endpoint": endpoint,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                    },
                )
            REQUEST_ID.reset(token)


def _broker_offsets(request: Request, state: ApiState) -> BrokerOffsets:
    offsets: BrokerOffsets | None = getattr(request.app.state, "broker_offsets", None)
    if offsets is None:
        offsets = BrokerOffsets(state.settings.kafka if state.settings.broker_url else None)
        request.app.state.broker_offsets = offsets
    return offsets


async def pipeline_status(request: Request, state: ApiState) -> PipelineStatus:
    """The pipeline's numbers now; Redis errors are counted and raised."""
    try:
        return await read_pipeline_status(
            state.redis, state.registry, _broker_offsets(request, state)
        )
    except Exception:
        REDIS_ERRORS.inc()
        raise
