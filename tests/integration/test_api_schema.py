"""schemathesis against the real API process: no input gives a 5xx, every answer keeps
the OpenAPI schema, and the schema says what the routes take.

The API (`feature-service serve`) serves the example definitions over the session's real
Redis and broker, with an API key of every scope sent on each request, so generated
requests reach real lookups, real pushes (the example topic exists) and real training
sets (over an offline store with a few events). schemathesis runs as its own CLI, every
phase (the schema's examples, coverage, fuzzing, stateful links) and every check:

- server errors (`not_a_server_error`), status codes, content types, headers and
  bodies against the schema (`response_schema_conformance`);
- schema-violating requests refused (`negative_data_rejection`), schema-valid ones
  accepted (`positive_data_acceptance`): the three body routes may refuse a valid one
  with 422 only for a rule no JSON schema can state (an unknown name, columns of
  unequal length, a row against its source's schema), which `api_fuzz_hooks.py` checks
  by the message; a refusal never echoes the request.

Bounded: `--max-time` and `--max-examples` keep it near a minute (`FUZZ_SECONDS`).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from feature_service.definitions import load_definitions
from feature_service.embedded import EmbeddedStack
from feature_service.offline.event_log import EventLog
from feature_service.stream.topics import ensure_topics
from tests.conditions import wait_for
from tests.conftest import ROOT
from tests.integration.running_up import live
from tests.integration.streaming import start_api

pytestmark = pytest.mark.integration
KEY = "fuzz-key"
FUZZ_SECONDS = 60
HOOKS = Path(__file__).with_name("api_fuzz_hooks.py")

# The operations with a JSON body: a schema-valid body may still name what the deployed
# definitions do not have, or break a cross-field rule (422, checked by the hooks), or
# exceed an operator's limit (413).
CONFIG = """
[[operations]]
include-path-regex = "^/(get-online-features|get-historical-features|push)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "413", "422"]
"""


def _offline_store(path: Path) -> None:
    """A few events of the example source in an offline log, so training sets read
    real files (`EventLog`'s own writer)."""
    source = load_definitions(ROOT / "definitions").sources["transactions"]
    events = pd.DataFrame(
        {
            "transaction_id": ["t1", "t2", "t3"],
            "customer_id": ["c001", "c001", "c002"],
            "merchant_id": ["m001", "m002", "m001"],
            "amount": [12.5, 3.0, 99.0],
            "category": ["grocery", "fuel", "grocery"],
            "channel": ["pos", "pos", "online"],
            "is_international": [False, False, True],
            "ts": [1_793_700_000.0, 1_793_703_600.0, 1_793_706_000.0],
        }
    ).assign(
        event_ts=lambda f: f["ts"],
        _partition=0,
        _offset=[0, 1, 2],
        _watermark=lambda f: f["ts"].cummax().shift(fill_value=float("-inf")),
    )
    EventLog(str(path)).write_batch(source, 0, 0, events)


def test_no_input_gives_a_5xx_or_breaks_the_schema(stack: EmbeddedStack, tmp_path: Path) -> None:
    definitions = ROOT / "definitions"
    asyncio.run(ensure_topics(stack.broker.bootstrap, load_definitions(definitions)))
    offline = tmp_path / "offline"
    _offline_store(offline)
    api, url = start_api(
        stack,
        definitions,
        tmp_path,
        "api-fuzz",
        FS_API_KEYS=json.dumps({KEY: ["read", "write", "admin"]}),
        FS_API_KEY_FAILURES_PER_MINUTE="100000",  # schemathesis sends wrong keys on purpose
        FS_OFFLINE_URI=str(offline),
    )
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    try:
        wait_for(lambda: live(url), 60, "API serving", api)
        # the key schemathesis sends opens every route (else it would fuzz 401s only)
        example = {"features": ["customer_txn:txn_count_1d"], "entities": {"customer_id": ["c001"]}}
        seen = httpx.post(f"{url}/get-online-features", json=example, headers={"X-API-Key": KEY})
        assert seen.status_code == 200, seen.text
        run = subprocess.run(
            [
                sys.executable, "-m", "schemathesis.cli", "--config-file", str(config),
                "run", f"{url}/openapi.json",
                "--checks", "all",
                "--header", f"X-API-Key: {KEY}",
                "--max-time", str(FUZZ_SECONDS),
                "--max-examples", "150",
                "--workers", "1",
                "--seed", "21",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=FUZZ_SECONDS * 4,
            cwd=tmp_path,  # schemathesis writes its cache and reports there
            env={**stack.env(), "SCHEMATHESIS_HOOKS": str(HOOKS)},
        )  # fmt: skip
    finally:
        api.stop(timeout=5)
    log = (tmp_path / "api.log").read_text()
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert "Traceback" not in log, log[-4000:]
    generated = re.search(r"(\d+) generated", run.stdout)
    assert generated and int(generated.group(1)) >= 1000, run.stdout[-3000:]
