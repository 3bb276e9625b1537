"""`feature-service up` starts a schema registry for a source that asks for one.

A source whose `schema_registry` gives no `url` (and no FS_SCHEMA_REGISTRY_URL): `up`
starts the embedded Apicurio Registry, its worker and the commands started beside it
find it (`stack.json`), `produce` writes the events framed with a registered id, the
worker decodes them, and the registry stops with the stack.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import redis

from feature_service.online.redis_layout import stats_key
from tests.conditions import wait_for
from tests.integration.running_up import RunningUp, clean_env, run_cli

pytestmark = pytest.mark.integration

AVSC = {
    "type": "record",
    "name": "Tx",
    "fields": [
        {"name": "customer_id", "type": "string"},
        {"name": "amount", "type": ["null", "double"]},
        {"name": "ts", "type": "double"},
    ],
}
DEFINITIONS = """
entities:
  - {name: customer, join_key: customer_id}
sources:
  - {name: tx, topic: tx, timestamp_field: ts, format: avro, schema_file: tx.avsc,
     schema_registry: {subject: tx-value}}
feature_views:
  - name: cust
    source: tx
    entity: customer
    features:
      - {name: n, aggregation: count}
"""


def test_up_runs_a_registry_for_a_source_without_a_registry_url(tmp_path: Path) -> None:
    definitions = tmp_path / "defs"
    definitions.mkdir()
    (definitions / "tx.avsc").write_text(json.dumps(AVSC))
    (definitions / "defs.yaml").write_text(DEFINITIONS)
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"customer_id": "c1", "amount": 2.5, "ts": 1790000000}\n'
        '{"customer_id": "c2", "amount": null, "ts": 1790000001}\n'
        '{"customer_id": "c1", "amount": "x", "ts": 1790000002}\n'
    )
    with RunningUp(tmp_path, "--no-replay", definitions=definitions) as up:
        up.wait_output("API ready", timeout=240)
        stack = up.stack()
        url = stack["schema_registry_url"]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/apis/ccompat/v7")
        beside = clean_env(FS_STORES_DIR=str(up.stores))
        sent = run_cli("produce", "tx", str(events), cwd=tmp_path, env=beside)
        assert sent.returncode == 0, sent.stderr
        assert "sent 3 events to tx; 1 of them malformed" in sent.stdout, sent.stdout
        subjects = httpx.get(f"{url}/subjects").json()
        assert subjects == ["tx-value"]
        client = redis.Redis.from_url(stack["redis_url"])
        try:
            wait_for(
                lambda: (
                    int(client.hget(stats_key("tx"), "events") or 0) == 2
                    and int(client.hget(stats_key("tx"), "dlq") or 0) == 1
                ),
                60,
                "the framed events decoded and the malformed one dead-lettered",
            )
        finally:
            client.close()
        shown = run_cli("status", cwd=tmp_path, env=beside)
        assert "tx (avro)" in shown.stdout, shown.stdout
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/subjects", timeout=2)  # stopped with the stack
