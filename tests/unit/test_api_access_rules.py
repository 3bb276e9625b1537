"""Which route needs what (`api.access.AccessRules`): every route of the API is open or
declares its scope, and one that does neither stops the API at start."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, FastAPI

from feature_service.api.access import ANY_KEY, AccessRules, needs


def _app(router_dependencies: list[Any] | None) -> FastAPI:
    app = FastAPI()
    router = APIRouter()

    @router.get("/things/{name}")
    def thing(name: str) -> str:
        return name

    @router.get("/health")
    def health() -> str:
        return "ok"

    app.include_router(router, dependencies=router_dependencies or [])
    return app


def test_a_route_that_declares_no_scope_stops_the_start() -> None:
    with pytest.raises(RuntimeError, match=r"route /things/\{name\} must declare one scope"):
        AccessRules.of(_app(None))


def test_an_open_path_must_not_declare_a_scope() -> None:
    with pytest.raises(RuntimeError, match="/health is open and also declares"):
        AccessRules.of(_app(needs("read")))


def test_the_needs_of_the_api_routes() -> None:
    from feature_service.api.app import create_app
    from feature_service.core.config import Settings
    from feature_service.definitions import Registry

    rules = AccessRules.of(create_app(Settings(), Registry()))
    assert rules.need("/push", "POST")[0] == "write"
    assert rules.need("/get-online-features", "POST")[0] == "read"
    assert rules.need("/status", "GET")[0] == "read"
    assert rules.need("/feature-views/v/entities", "GET")[0] == "read"
    assert rules.need("/health", "HEAD")[0] is None
    assert rules.need("/ui/app.js", "GET")[0] is None
    assert rules.need("/no-such-thing", "GET")[0] is ANY_KEY
