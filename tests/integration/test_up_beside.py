"""Commands started beside `feature-service up` use its definitions and offline store, a
restart of `up` starts consistently clean, and `produce` survives a line it cannot read
(issue 12, items 10, 11, 12)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pandas as pd
import pytest
import redis
from aiokafka import AIOKafkaConsumer

from feature_service.definitions import load_definitions
from feature_service.embedded import EmbeddedStack
from feature_service.online.redis_layout import stats_key
from feature_service.stream.topics import ensure_topics
from tests.conditions import wait_for
from tests.integration.running_up import ROOT, RunningUp, clean_env, run_cli

pytestmark = pytest.mark.integration
SAMPLE = ROOT / "definitions/sample/transactions.jsonl"
SAMPLE_LINES = sum(1 for line in SAMPLE.open() if line.strip())

# A folder's own definitions that know nothing of `transactions`.
DECOY = """\
entities:
  - name: user
    join_key: user_id
sources:
  - name: clicks
    topic: clicks
    timestamp_field: ts
    schema: {user_id: string, ts: timestamp}
feature_views:
  - name: user_clicks
    source: clicks
    entity: user
    ttl: 1d
    features:
      - {name: click_count_1h, aggregation: count, window: 1h}
"""


def _counted(redis_url: str) -> int:
    with redis.Redis.from_url(redis_url, socket_timeout=2) as client:
        raw = client.hgetall(stats_key("transactions"))
    return int(raw.get(b"events", 0)) + int(raw.get(b"dlq", 0))


def _entity_rows(path: Path) -> tuple[str, float]:
    """Rows asking for customer c039's features just after its last sample event."""
    events = [json.loads(line) for line in SAMPLE.open() if '"c039"' in line]
    last = max(float(e["ts"]) for e in events if isinstance(e.get("ts"), (int, float)))
    pd.DataFrame(
        {"customer_id": ["c039"], "event_timestamp": [pd.Timestamp(last + 1, unit="s", tz="UTC")]}
    ).to_parquet(path)
    return "c039", last + 1


def test_commands_beside_up_use_its_definitions_and_offline_store(tmp_path: Path) -> None:
    work, data = tmp_path / "work", tmp_path / "data"
    (work / "definitions").mkdir(parents=True)
    (work / "definitions" / "clicks.yaml").write_text(DECOY)
    beside = clean_env(FS_STORES_DIR=str(data))  # finds stack.json; nothing else set
    with RunningUp(work, "--no-replay", stores=data) as up:
        up.wait_output("API ready")
        stack = up.stack()
        assert stack["definitions"] == str(ROOT / "definitions")
        assert stack["offline_uri"] == str(data / "offline")

        sent = run_cli("produce", "transactions", str(SAMPLE), cwd=work, env=beside)
        assert sent.returncode == 0, sent.stderr
        assert f"sent {SAMPLE_LINES} events to transactions" in sent.stdout
        wait_for(lambda: _counted(stack["redis_url"]) == SAMPLE_LINES, what="the events")

        status = run_cli("status", "--json", cwd=work, env=beside)
        assert status.returncode == 0, status.stderr
        assert "customer_txn" in status.stdout and "user_clicks" not in status.stdout

        _entity_rows(work / "rows.parquet")
        out = work / "train.parquet"
        trained = run_cli(
            "training-set", "--entities", "rows.parquet", "--features",
            "customer_txn:txn_count_7d", "-o", str(out), cwd=work, env=beside,
        )  # fmt: skip
        assert trained.returncode == 0, trained.stderr
        assert int(pd.read_parquet(out)["txn_count_7d"][0]) > 0  # read the stack's log

        parity = run_cli("parity", "--sample", "20", cwd=work, env=beside)
        assert parity.returncode == 0, parity.stdout + parity.stderr
        assert "0 mismatches" in parity.stdout

        # An explicit setting wins over the running stack's.
        own = dict(beside, FS_DEFINITIONS=str(work / "definitions"))
        refused = run_cli("produce", "transactions", str(SAMPLE), cwd=work, env=own)
        assert refused.returncode == 1
        assert "unknown source 'transactions' (known: clicks)" in refused.stderr
        assert up.stop() == 0, up.output


def test_a_restarted_up_starts_clean_and_says_so(tmp_path: Path) -> None:
    with RunningUp(tmp_path) as first:
        first.wait_output("API ready")
        redis_url = first.stack()["redis_url"]
        wait_for(lambda: _counted(redis_url) == SAMPLE_LINES, what="the sample")
        assert first.stop() == 0, first.output
    assert list((tmp_path / "stores/offline").rglob("*.parquet"))

    with RunningUp(tmp_path, "--no-replay") as second:
        second.wait_output("API ready")
        assert "clean start: moved the offline log to" in second.output
        assert list((tmp_path / "stores/offline.previous").rglob("*.parquet"))
        assert not list((tmp_path / "stores/offline").rglob("*.parquet"))

        # Online and training sets agree: the previous run's events are in neither.
        entity, _ = _entity_rows(tmp_path / "rows.parquet")
        online = httpx.post(
            f"{second.api_url}/get-online-features",
            json={
                "features": ["customer_txn:txn_count_7d"],
                "entities": {"customer_id": [entity]},
            },
            timeout=10,
        ).json()
        assert online["results"][1]["statuses"] == ["NOT_FOUND"]
        out = tmp_path / "train.parquet"
        trained = run_cli(
            "training-set", "--entities", "rows.parquet", "--features",
            "customer_txn:txn_count_7d", "-d", str(ROOT / "definitions"), "-o", str(out),
            cwd=tmp_path, env=clean_env(),
        )  # fmt: skip
        assert trained.returncode == 0, trained.stderr
        assert int(pd.read_parquet(out)["txn_count_7d"][0]) == 0
        assert second.stop() == 0, second.output


def test_produce_sends_every_line_of_a_file_with_one_it_cannot_read(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    """A 10k-deep JSON line is sent as written (the worker dead-letters it) and named."""
    (tmp_path / "deep.yaml").write_text(DECOY.replace("topic: clicks", "topic: deep-clicks"))
    registry = load_definitions(tmp_path / "deep.yaml")
    asyncio.run(ensure_topics(stack.broker.bootstrap, registry))
    deep = "[" * 10_000 + "]" * 10_000
    lines = ['{"user_id": "u1", "ts": 1}', deep, '{"user_id": "u2", "ts": 2}']
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    env = clean_env(FS_BROKER_URL=stack.broker.bootstrap, FS_STORES_DIR=str(tmp_path / "s"))

    result = run_cli("produce", "clicks", "events.jsonl", "-d", "deep.yaml", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "sent 3 events to deep-clicks" in result.stdout
    assert "events.jsonl line 2: nested too deeply" in result.stderr
    assert _topic_values(stack.broker.bootstrap, "deep-clicks", 3) == sorted(
        line.encode() for line in lines
    )


def _topic_values(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    async def read() -> list[bytes]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
            enable_auto_commit=False,
        )  # fmt: skip
        await consumer.start()
        try:
            got: list[bytes] = []
            async with asyncio.timeout(30):
                while len(got) < expected:
                    batches = await consumer.getmany(timeout_ms=500)
                    got += [m.value for ms in batches.values() for m in ms if m.value]
            return sorted(got)
        finally:
            await consumer.stop()

    return asyncio.run(read())
