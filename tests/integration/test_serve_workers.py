"""`feature-service serve --workers 2`: several processes answer on one port."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import pytest

from feature_service.embedded import EmbeddedStack, ManagedProcess
from feature_service.embedded.processes import free_port, port_open
from tests.conditions import wait_for
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_two_api_processes_serve_lookups(stack: EmbeddedStack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    env = stack.env()
    api = ManagedProcess(
        "api-workers",
        [sys.executable, "-m", "feature_service.cli.main", "serve", "--port", str(port),
         "--workers", "2", "--definitions", str(ROOT / "definitions")],
        log_path=tmp_path / "api.log",
        env=env,
    ).start()  # fmt: skip
    try:
        wait_for(lambda: port_open("127.0.0.1", port), 60, "API serving", api)
        body = json.dumps(
            {"features": ["customer_txn:txn_count_1h"], "entities": {"customer_id": ["c001"]}}
        ).encode()
        for _ in range(20):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/get-online-features",
                data=body,
                headers={"content-type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.loads(response.read())
            assert answer["metadata"]["feature_names"] == ["customer_id", "txn_count_1h"]
        pid = api.pid
        assert pid is not None
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        assert len(children) >= 2, children  # two uvicorn worker processes
    finally:
        api.stop()
