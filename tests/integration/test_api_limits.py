"""The lookup API as one real uvicorn process (`feature-service serve`) under requests that
used to wedge it or turn it away: absurd `as_of` times, many concurrent lookups, and a
body over the cap (which it used to wait for, whole)."""

from __future__ import annotations

import asyncio
import http.client
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from feature_service.definitions import FeatureView
from feature_service.embedded import EmbeddedStack
from tests.conditions import wait_for
from tests.integration.running_up import live
from tests.integration.streaming import start_api, write_definitions

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(
    stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, FeatureView]]:
    """`feature-service serve` on a free port over the session's Redis."""
    tmp: Path = tmp_path_factory.mktemp("api-limits")
    definitions, registry = write_definitions(tmp)
    api, url = start_api(stack, definitions, tmp, "api-limits")
    try:
        wait_for(lambda: live(url), 60, "API serving", api)
        yield url, next(iter(registry.feature_views.values()))
    finally:
        api.stop(timeout=5)


@pytest.mark.parametrize("as_of", [1e308, 1e30, -1e30, "0001-01-01T00:00:00Z"])
def test_as_of_outside_years_1900_to_2199_is_a_422_and_the_api_keeps_answering(
    served: tuple[str, FeatureView], as_of: float | str
) -> None:
    url, view = served
    body = {
        "features": [f"{view.name}:amount_sum_1h", f"{view.name}:n_1h"],
        "entities": {"customer_id": ["c1"]},
        "as_of": as_of,
    }
    # before the fix the process spun in hop_start for good: this timed out
    response = httpx.post(f"{url}/get-online-features", json=body, timeout=10)
    assert response.status_code == 422, response.text
    assert "as_of" in response.text and "1900-01-01..2199-12-31" in response.text
    assert httpx.get(f"{url}/health/live", timeout=2).json() == {"status": "ok"}


def test_two_hundred_concurrent_lookups_all_get_200(served: tuple[str, FeatureView]) -> None:
    url, view = served
    body = {
        "features": [f"{view.name}:{f.name}" for f in view.features],
        "entities": {"customer_id": [f"c{i}" for i in range(20)]},
    }

    async def burst() -> list[tuple[int, str]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

            async def one() -> tuple[int, str]:
                response = await client.post("/get-online-features", json=body)
                return response.status_code, response.text[:200]

            return await asyncio.gather(*(one() for _ in range(200)))

    answers = asyncio.run(burst())
    refused = [a for a in answers if a[0] != 200]
    # before the fix, redis-py's pool of 100 refused the rest: 503 MaxConnectionsError
    assert not refused, f"{len(refused)} of 200 not 200, e.g. {refused[0]}"


def test_without_api_keys_a_body_over_the_default_cap_is_a_413_before_it_is_read(
    served: tuple[str, FeatureView],
) -> None:
    url, _ = served
    host, port = url.removeprefix("http://").split(":")
    over = 8 * 1024 * 1024 + 1  # FS_MAX_BODY_BYTES' default, and one byte
    head = (
        f"POST /get-online-features HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {over}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(head.encode())  # and no body: the answer must not wait for it
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 413
        assert b"FS_MAX_BODY_BYTES" in response.read()
