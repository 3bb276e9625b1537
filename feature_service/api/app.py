"""The FastAPI application: `create_app(settings)` wires routes to shared state."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from feature_service import __version__
from feature_service.api import ui
from feature_service.api.access import AccessRules, ApiAccess, needs
from feature_service.api.deps import ApiState
from feature_service.api.lookup_path import LookupPath
from feature_service.api.observability import RequestObservability
from feature_service.api.routes import (
    dlq,
    entities,
    health,
    historical,
    metrics,
    online,
    push,
    registry,
    status,
)
from feature_service.core.config import Settings, load_settings
from feature_service.definitions import Registry
from feature_service.definitions.watch import DefinitionsWatcher
from feature_service.online.accepted_definitions import load_or_last_accepted
from feature_service.online.redis_client import connect
from feature_service.online.view_layouts import check_definitions

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, registry_: Registry | None = None) -> FastAPI:
    """The lookup API; definitions are loaded (and checked) before it serves anything.

    Unless a registry is given, the definitions are watched (every
    `FS_DEFINITIONS_POLL_S`) and swapped in when they change, load cleanly and change
    no view's recorded state layout (`online.view_layouts`, the worker's rule too);
    refused ones are reported on /health while the previous registry keeps serving.
    """
    settings = settings or load_settings()
    watcher = DefinitionsWatcher(settings.definitions) if registry_ is None else None
    loaded = registry_ or load_or_last_accepted(settings, settings.definitions, watcher)
    redis_url = settings.redis_url or "redis://127.0.0.1:6379/0"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = connect(
            redis_url,
            cluster=settings.redis_cluster,
            max_connections=settings.redis_max_connections,
            pool_timeout_s=settings.redis_pool_timeout_s,
            socket_connect_timeout=0.5,
            socket_timeout=1.0,
        )
        app.state.api = state = ApiState(settings=settings, registry=loaded, redis=client)
        state.refused_definitions = watcher.refused if watcher is not None else ""
        # Everything loaded so far lives as long as the process: out of the collector's
        # way, a full collection no longer walks it in the middle of a lookup (~10 ms).
        gc.freeze()
        reload = None
        if watcher is not None and settings.definitions_poll_s > 0:
            reload = asyncio.create_task(_reload(state, watcher, settings.definitions_poll_s))
        try:
            yield
        finally:
            if reload is not None:
                reload.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reload
            await state.close()

    app = FastAPI(
        title="feature-service",
        version=__version__,
        description="Online features, point-in-time training sets and the feature registry.",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    # The scope each router's routes need (api/access.py): a route that neither declares
    # one nor is open stops the API at start.
    keyed = needs("read")  # reads: lookups, registry, status, training sets
    app.include_router(registry.router, dependencies=keyed)
    app.include_router(online.router, dependencies=keyed)
    app.include_router(push.router, dependencies=needs("write"))
    app.include_router(historical.router, dependencies=keyed)
    app.include_router(entities.router, dependencies=keyed)
    app.include_router(dlq.router, dependencies=keyed)  # raw event values: data
    app.include_router(status.router, dependencies=keyed)  # names topics, views, workers
    app.include_router(metrics.router)  # open like /health: scrapers send no key
    app.include_router(ui.router)
    app.mount("/ui", ui.static_files(), name="ui")
    app.add_middleware(LookupPath)  # inside the observability: ids, metrics and logs stay
    # Keys, scopes and the body cap before anything reads a body (LookupPath, the routes).
    app.add_middleware(ApiAccess, settings=settings, rules=AccessRules.of(app))
    app.add_middleware(RequestObservability)
    return app


async def _reload(state: ApiState, watcher: DefinitionsWatcher, every_s: float) -> None:
    """Swap in new definitions when they change and are allowed; requests in flight
    keep the old ones. Refused definitions are logged once and shown on /health."""
    first = await check_definitions(state.redis, state.registry)
    if first.changes:  # started on them: nothing older to serve; lookups of the view 503
        state.refused_definitions = first.refusal
        log.error("the definitions served change recorded view layouts: %s", first.log_line)
    while True:
        await asyncio.sleep(every_s)
        try:
            registry = await asyncio.to_thread(watcher.poll)
            if registry is None:  # unchanged, or files that do not load (`refused` says why)
                state.refused_definitions = watcher.refused or state.refused_definitions
                continue
            check = await check_definitions(state.redis, registry, state.registry)
        except Exception:  # never let a reload problem stop serving
            log.exception("checking the definitions failed")
            continue
        if check.changes:
            state.refused_definitions = check.refusal
            log.error("new definitions refused; serving the previous ones: %s", check.log_line)
        else:
            state.registry = registry
            state.refused_definitions = ""
