"""schemathesis against the real API process: no input gives a 5xx or breaks the schema.

The API serves the example definitions over the real Redis and broker, so generated
requests reach real lookups and real pushes (the example topic exists). schemathesis
runs as its own CLI (its pytest plugin does not support pytest 9 yet), with every
check: server errors, status codes and response bodies against the OpenAPI schema,
negative data rejected, positive data accepted.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from feature_service.definitions import load_definitions
from feature_service.embedded import EmbeddedStack
from feature_service.embedded.processes import free_port, port_open
from feature_service.stream.topics import ensure_topics
from tests.conditions import wait_for
from tests.conftest import ROOT

pytestmark = pytest.mark.integration
HOST = "127.0.0.1"


def test_no_input_gives_a_5xx_or_breaks_the_schema(stack: EmbeddedStack, tmp_path: Path) -> None:
    definitions = ROOT / "definitions"
    asyncio.run(ensure_topics(stack.broker.bootstrap, load_definitions(definitions)))
    port = free_port(HOST)
    process = stack.api_process(port, definitions)
    process.env["FS_API_KEYS"] = '["test-key"]'
    api = process.start()
    try:
        wait_for(lambda: port_open(HOST, port), 60, "API serving", api)
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"http://{HOST}:{port}/openapi.json",
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--header",
                "X-API-Key: test-key",
                "--max-examples",
                "40",
                "--workers",
                "1",
                "--seed",
                "1",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,  # schemathesis writes its cache and reports there
        )
    finally:
        api.stop()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
