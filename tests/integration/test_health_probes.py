"""Probes: the API is live while it serves HTTP, ready only while its dependencies answer."""

from __future__ import annotations

from fastapi.testclient import TestClient

from feature_service.api.app import create_app
from feature_service.core.config import Settings
from feature_service.definitions import load_definitions
from feature_service.embedded.processes import free_port
from tests.conftest import ROOT


def test_api_with_redis_down_is_live_but_not_ready() -> None:
    dead = free_port()
    settings = Settings(redis_url=f"redis://127.0.0.1:{dead}/0", broker_url=f"127.0.0.1:{dead}")
    with TestClient(create_app(settings, load_definitions(ROOT / "definitions"))) as api:
        assert api.get("/health/live").json() == {"status": "ok"}
        health = api.get("/health")
        assert health.status_code == 503
        assert health.json()["dependencies"]["redis"]["status"] == "down"
