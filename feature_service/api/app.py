"""The FastAPI application: `create_app(settings)` wires routes to shared state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from feature_service import __version__
from feature_service.api import ui
from feature_service.api.deps import ApiState, require_api_key
from feature_service.api.observability import RequestObservability
from feature_service.api.routes import entities, health, metrics, online, push, registry, status
from feature_service.core.config import Settings, load_settings
from feature_service.definitions import Registry, load_definitions
from feature_service.online.redis_client import connect


def create_app(settings: Settings | None = None, registry_: Registry | None = None) -> FastAPI:
    """The lookup API; definitions are loaded (and checked) before it serves anything."""
    settings = settings or load_settings()
    loaded = registry_ or load_definitions(settings.definitions)
    redis_url = settings.redis_url or "redis://127.0.0.1:6379/0"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = connect(redis_url, socket_connect_timeout=0.5, socket_timeout=1.0)
        app.state.api = state = ApiState(settings=settings, registry=loaded, redis=client)
        try:
            yield
        finally:
            await state.close()

    app = FastAPI(
        title="feature-service",
        version=__version__,
        description="Online features, point-in-time training sets and the feature registry.",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    keyed = [Depends(require_api_key)]  # every data endpoint; see api/deps.py
    app.include_router(registry.router, dependencies=keyed)
    app.include_router(online.router, dependencies=keyed)
    app.include_router(push.router, dependencies=keyed)
    app.include_router(entities.router, dependencies=keyed)
    # Open like /health: operational numbers for probes, scrapers and the UI, no data.
    app.include_router(metrics.router)
    app.include_router(status.router)
    app.include_router(ui.router)
    app.mount("/ui", ui.static_files(), name="ui")
    app.add_middleware(RequestObservability)
    return app
