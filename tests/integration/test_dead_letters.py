"""Why events were dead-lettered: `feature-service dlq`, `GET /dlq` and the UI's panel;
`produce` says how many lines the worker will refuse (issue 21, item 16)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import redis

from feature_service.online.redis_layout import stats_key
from tests.conditions import wait_for
from tests.integration.running_up import ROOT, RunningUp, clean_env, run_cli

pytestmark = pytest.mark.integration
SAMPLE = ROOT / "definitions/sample/transactions.jsonl"
SAMPLE_LINES = sum(1 for line in SAMPLE.open() if line.strip())


def _stats(redis_url: str) -> dict[bytes, bytes]:
    with redis.Redis.from_url(redis_url, socket_timeout=2) as client:
        return dict(client.hgetall(stats_key("transactions")))


def _counted(redis_url: str) -> int:
    raw = _stats(redis_url)
    return int(raw.get(b"events", 0)) + int(raw.get(b"dlq", 0))


def test_dead_letters_are_shown_with_their_reasons(tmp_path: Path) -> None:
    with RunningUp(tmp_path) as up:
        up.wait_output("API ready")
        stack = up.stack()
        wait_for(lambda: _counted(stack["redis_url"]) == SAMPLE_LINES, what="the sample")
        dead = int(_stats(stack["redis_url"])[b"dlq"])
        assert dead > 3
        beside = clean_env(FS_STORES_DIR=str(up.stores))

        # The CLI: the newest N, one line each: where, why, the raw value.
        shown = run_cli("dlq", "--source", "transactions", "--limit", "3", cwd=tmp_path, env=beside)
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert len(lines) == 3, shown.stdout
        assert all(line.startswith("transactions p") for line in lines), shown.stdout
        every = run_cli("dlq", "--limit", "1000", "--json", cwd=tmp_path, env=beside)
        letters = [json.loads(line) for line in every.stdout.splitlines()]
        assert len(letters) == dead, every.stdout
        assert {"reason", "offset", "partition", "value"} <= set(letters[0])
        assert any("missing field 'customer_id'" in letter["reason"] for letter in letters)

        # The API and the UI's panel.
        answer = httpx.get(f"{up.api_url}/dlq", params={"source": "transactions", "limit": 2})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body["dead_letters"]) == 2 and body["dead_letters"][0]["reason"]
        assert body["dead_letters"] == letters[-2:]
        unknown = httpx.get(f"{up.api_url}/dlq", params={"source": "nope"})
        assert unknown.status_code == 404 and "nope" in unknown.text
        page = httpx.get(f"{up.api_url}/").text
        assert 'id="dlq-section"' in page
        assert "/dlq" in httpx.get(f"{up.api_url}/ui/app.js").text

        # --follow shows a new one as it comes; produce says it sent a malformed line.
        follow = subprocess.Popen(
            [sys.executable, "-m", "feature_service.cli.main", "dlq", "--follow", "--limit", "1"],
            cwd=tmp_path,
            env=beside,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        seen: list[str] = []
        threading.Thread(target=lambda: seen.extend(follow.stdout or []), daemon=True).start()
        try:
            # It printed the newest one it found: it follows from there.
            wait_for(lambda: len(seen) == 1, what="dlq --follow to start")
            bad = tmp_path / "bad.jsonl"
            bad.write_text('{"customer_id": "c001", "amount": "lots", "ts": 1793491317.2}\n')
            sent = run_cli("produce", "transactions", str(bad), cwd=tmp_path, env=beside)
            assert sent.returncode == 0, sent.stderr
            assert "1 of them malformed" in sent.stdout + sent.stderr, sent.stdout + sent.stderr
            assert "feature-service dlq" in sent.stdout + sent.stderr
            wait_for(lambda: any("lots" in line for line in seen), what="the new dead letter")
        finally:
            follow.terminate()
            follow.wait(timeout=30)
