"""Who may call what, and how much they may send: API keys with scopes, the rate limit on
failed keys, the body cap, and the endpoints open without a key (DESIGN.md "Access").

One real API process (`feature-service serve`) with scoped keys and a small body cap.
The rate limit is per client address: each test that must not share a budget with the
others connects from its own loopback address (127.0.0.x; Linux routes all of 127/8 to
the loopback interface, and the server sees the source address it was given).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from feature_service.api.app import create_app
from feature_service.core.config import Settings
from feature_service.definitions import FeatureView
from feature_service.embedded import EmbeddedStack, ManagedProcess
from feature_service.stream.topics import ensure_topics
from tests.conditions import wait_for
from tests.integration.running_up import live
from tests.integration.streaming import start_api, write_definitions

pytestmark = pytest.mark.integration

READER, WRITER = "reader-key-1", "writer-key-2"
CAP = 64 * 1024  # FS_MAX_BODY_BYTES of the process under test
FAILURES_PER_MINUTE = 5  # FS_API_KEY_FAILURES_PER_MINUTE of the process under test
OPEN = {"/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/health",
        "/health/live", "/metrics"}  # fmt: skip
T0 = 1_790_000_000.0


class Served:
    """The API process under test and how to reach it."""

    def __init__(self, url: str, api: ManagedProcess, view: FeatureView, log: Path) -> None:
        self.url, self.api, self.view, self.log = url, api, view, log
        host, port = url.removeprefix("http://").split(":")
        self.address = (host, int(port))

    def client(self, source: str = "127.0.0.1") -> httpx.Client:
        """A client connecting from `source` (a loopback address: the rate limit's key)."""
        transport = httpx.HTTPTransport(local_address=source)
        return httpx.Client(base_url=self.url, transport=transport, timeout=20)


def _lookup(view: FeatureView) -> dict[str, Any]:
    return {"features": [f"{view.name}:n_1h"], "entities": {"customer_id": ["c1"]}}


def _push(view: FeatureView) -> dict[str, Any]:
    row = {"customer_id": ["c1"], "amount": [1.0], "category": ["fuel"], "online": [False],
           "ts": [T0]}  # fmt: skip
    return {"push_source_name": view.source.name, "df": row}


def _historical(view: FeatureView) -> dict[str, Any]:
    return {
        "features": [f"{view.name}:n_1h"],
        "entities": {"customer_id": ["c1"], "event_timestamp": [T0]},
    }


@pytest.fixture(scope="module")
def served(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp: Path = tmp_path_factory.mktemp("api-access")
    definitions, registry = write_definitions(tmp)
    asyncio.run(ensure_topics(stack.broker.bootstrap, registry))
    keys = {READER: ["read"], WRITER: ["read", "write"]}
    api, url = start_api(
        stack,
        definitions,
        tmp,
        "api-access",
        FS_API_KEYS=json.dumps(keys),
        FS_MAX_BODY_BYTES=str(CAP),
        FS_API_KEY_FAILURES_PER_MINUTE=str(FAILURES_PER_MINUTE),
        FS_OFFLINE_URI=str(tmp / "offline"),
    )
    try:
        wait_for(lambda: live(url), 60, "API serving", api)
        yield Served(url, api, next(iter(registry.feature_views.values())), tmp / "api.log")
    finally:
        api.stop(timeout=5)


# --- scopes (item 6) ------------------------------------------------------------------


def test_a_read_only_key_looks_up_but_gets_403_naming_the_scope_on_push(served: Served) -> None:
    with served.client() as client:
        reader, writer = {"X-API-Key": READER}, {"X-API-Key": WRITER}
        looked_up = client.post("/get-online-features", json=_lookup(served.view), headers=reader)
        assert looked_up.status_code == 200, looked_up.text
        assert client.get("/feature-views", headers=reader).status_code == 200
        assert client.get("/status", headers=reader).status_code == 200
        historical = _historical(served.view)
        trained = client.post("/get-historical-features", json=historical, headers=reader)
        assert trained.status_code not in (401, 403), trained.text
        refused = client.post("/push", json=_push(served.view), headers=reader)
        assert refused.status_code == 403, refused.text
        assert refused.json() == {"detail": "this API key lacks the scope 'write' (POST /push)"}
        pushed = client.post("/push", json=_push(served.view), headers=writer)
        assert pushed.status_code == 200, pushed.text


def test_a_key_given_in_list_form_reads_and_pushes(
    stack: EmbeddedStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, registry = write_definitions(tmp_path)
    asyncio.run(ensure_topics(stack.broker.bootstrap, registry))
    monkeypatch.setenv("FS_API_KEYS", '["listed"]')  # the form before scopes existed
    settings = Settings(redis_url=stack.redis.url, broker_url=stack.broker.bootstrap)
    view = next(iter(registry.feature_views.values()))
    with TestClient(create_app(settings, registry)) as api:
        keyed = {"X-API-Key": "listed"}
        assert api.post("/push", json=_push(view), headers=keyed).status_code == 200
        looked_up = api.post("/get-online-features", json=_lookup(view), headers=keyed)
        assert looked_up.status_code == 200
        assert api.post("/push", json=_push(view), headers={"X-API-Key": "x"}).status_code == 401


# --- failed keys (item 7) -------------------------------------------------------------


def test_repeated_bad_keys_from_one_address_get_429_with_retry_after_and_are_logged(
    served: Served,
) -> None:
    guess = "guessed-key-0123456789"
    answers = []
    with served.client("127.0.0.2") as client:
        for _ in range(FAILURES_PER_MINUTE + 3):
            answers.append(client.get("/feature-views", headers={"X-API-Key": guess}))
            if answers[-1].status_code == 429:
                break
        statuses = [a.status_code for a in answers]
        assert statuses[:FAILURES_PER_MINUTE] == [401] * FAILURES_PER_MINUTE, statuses
        limited = answers[-1]
        assert limited.status_code == 429, statuses
        retry_after = int(limited.headers["Retry-After"])
        assert 1 <= retry_after <= 60 // FAILURES_PER_MINUTE
        assert limited.json() == {
            "detail": f"too many failed API keys from 127.0.0.2: retry in {retry_after} s"
        }
        # while limited, the right key is refused too (else guesses would still tell)
        assert client.get("/feature-views", headers={"X-API-Key": READER}).status_code == 429
    with served.client("127.0.0.3") as other:  # another address has its own budget
        assert other.get("/feature-views", headers={"X-API-Key": READER}).status_code == 200

    def logged() -> list[str]:
        lines = served.log.read_text(errors="replace").splitlines()
        return [line for line in lines if "127.0.0.2" in line and "/feature-views" in line]

    wait_for(lambda: len(logged()) >= FAILURES_PER_MINUTE, 10, "failed keys logged")
    for line in logged():
        assert json.loads(line)["level"] == "warning", line
    assert guess not in served.log.read_text(errors="replace")


def test_a_missing_key_is_a_401_that_spends_no_budget(served: Served) -> None:
    with served.client("127.0.0.4") as client:
        for _ in range(FAILURES_PER_MINUTE + 2):
            assert client.get("/feature-views").status_code == 401
        assert client.get("/feature-views", headers={"X-API-Key": READER}).status_code == 200


# --- the body: key first, then a cap (item 8) -------------------------------------------


def _send_head(served: Served, path: str, headers: dict[str, str], source: str) -> socket.socket:
    sock = socket.create_connection(served.address, timeout=20, source_address=(source, 0))
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {served.url.removeprefix('http://')}",
        "Content-Type: application/json",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def _response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The answer on `sock`; a socket timeout if none comes (the server is still reading)."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, dict(response.getheaders()), response.read()


def _send_quietly(sock: socket.socket, parts: Iterable[bytes]) -> None:
    """Send what the server may no longer want (it answered): a reset ends it."""
    try:
        for part in parts:
            sock.sendall(part)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("path", ["/get-online-features", "/push", "/get-historical-features"])
def test_a_huge_unauthenticated_post_is_a_401_before_its_body(served: Served, path: str) -> None:
    pid = served.api.pid
    assert pid is not None
    rss_before = _rss_bytes(pid)
    huge = 300 * 1024 * 1024
    sock = _send_head(served, path, {"Content-Length": str(huge)}, "127.0.0.5")
    with sock:
        sock.sendall(b"[" + b"0," * 500_000)  # 1 MB of the 300: the server must not wait
        status, _, body = _response(sock)  # before the fix: it read on, no answer came
        assert status == 401, body
        chunk = b"1," * 512 * 1024
        _send_quietly(sock, (chunk for _ in range(100)))  # 100 MB more: not kept
    assert _rss_bytes(pid) - rss_before < 50 * 1024 * 1024


@pytest.mark.parametrize("path", ["/get-online-features", "/push", "/get-historical-features"])
def test_a_body_over_the_cap_is_a_413_by_its_content_length(served: Served, path: str) -> None:
    headers = {"X-API-Key": WRITER, "Content-Length": str(CAP + 1)}
    with _send_head(served, path, headers, "127.0.0.6") as sock:  # no body sent at all
        status, _, body = _response(sock)
    assert status == 413, body
    assert json.loads(body) == {"detail": f"request body over {CAP} bytes (FS_MAX_BODY_BYTES)"}


def _chunked(data: bytes, size: int = 8192) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        part = data[start : start + size]
        yield f"{len(part):x}\r\n".encode() + part + b"\r\n"


@pytest.mark.parametrize("path", ["/get-online-features", "/push", "/get-historical-features"])
def test_a_chunked_body_over_the_cap_is_a_413_once_the_cap_is_passed(
    served: Served, path: str
) -> None:
    headers = {"X-API-Key": WRITER, "Transfer-Encoding": "chunked"}
    with _send_head(served, path, headers, "127.0.0.6") as sock:
        # the cap and one byte, and no final chunk: the server must not wait for more
        _send_quietly(sock, _chunked(b"[" + b" " * CAP))
        status, _, body = _response(sock)
    assert status == 413, body
    assert b"FS_MAX_BODY_BYTES" in body


def test_a_chunked_body_under_the_cap_is_answered(served: Served) -> None:
    lookup = json.dumps(_lookup(served.view)).encode()
    headers = {"X-API-Key": READER, "Transfer-Encoding": "chunked"}
    with _send_head(served, "/get-online-features", headers, "127.0.0.6") as sock:
        sock.sendall(b"".join(_chunked(lookup, 16)) + b"0\r\n\r\n")
        status, _, body = _response(sock)
    assert status == 200, body


# --- one rule for every endpoint (item 9) -----------------------------------------------


def test_status_needs_a_key(served: Served) -> None:
    with served.client("127.0.0.7") as client:
        response = client.get("/status")
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert (
            client.get("/status", headers={"Authorization": f"Bearer {READER}"}).status_code == 200
        )


def test_every_endpoint_but_the_open_ones_needs_a_key(served: Served) -> None:
    with served.client("127.0.0.7") as client:
        schema = client.get("/openapi.json").json()
        routes = [
            (method.upper(), path.replace("{", "").replace("}", ""))
            for path, methods in schema["paths"].items()
            for method in methods
        ]
        assert ("GET", "/status") in routes and ("POST", "/push") in routes
        for method, path in routes:
            status = client.request(method, path).status_code
            if path in OPEN:
                assert status != 401, (method, path)
            else:
                assert status == 401, (method, path, status)
        for path in [*sorted(OPEN), "/ui/app.js"]:  # the UI's page and its code are open
            assert client.get(path).status_code not in (401, 403), path
        # an address that is not a route needs a key too (no probing of what exists)
        assert client.get("/no-such-thing").status_code == 401
