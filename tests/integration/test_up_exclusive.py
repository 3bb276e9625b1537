"""One `feature-service up` per stores folder: a second one refuses and touches nothing;
a crashed one does not leave the folder locked (issue 21, items 5 and 17)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest
import redis

from feature_service.embedded.processes import free_port
from feature_service.online.redis_layout import stats_key
from tests.conditions import wait_for
from tests.integration.running_up import ROOT, RunningUp, error_line, run_cli

pytestmark = pytest.mark.integration
SAMPLE = ROOT / "definitions/sample/transactions.jsonl"
SAMPLE_LINES = sum(1 for line in SAMPLE.open() if line.strip())
LOOKUP = {
    "features": ["customer_txn:txn_count_1d", "customer_txn:amount_sum_7d"],
    "entities": {"customer_id": ["c001", "c002"]},
    "as_of": "2026-11-03T12:00:00Z",
}


def _counted(redis_url: str) -> int:
    with redis.Redis.from_url(redis_url, socket_timeout=2) as client:
        raw = client.hgetall(stats_key("transactions"))
    return int(raw.get(b"events", 0)) + int(raw.get(b"dlq", 0))


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` (but the running stack's own logs and Redis files) with
    its size and modification time."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).parts[0] not in ("logs", "redis")
    }


def _values(url: str) -> object:
    response = httpx.post(f"{url}/get-online-features", json=LOOKUP, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_a_second_up_in_the_same_folder_refuses_and_touches_nothing(tmp_path: Path) -> None:
    stores = tmp_path / "stores"
    with RunningUp(tmp_path, stores=stores) as first:
        first.wait_output("API ready")
        stack = first.stack()
        wait_for(lambda: _counted(stack["redis_url"]) == SAMPLE_LINES, what="the sample")
        offline = stores / "offline" / "events" / "source=transactions"
        wait_for(lambda: any(offline.rglob("*.parquet")), what="the offline log")
        before = _files(stores)
        logs_before = sorted(p.name for p in (stores / "logs").iterdir())
        values_before = _values(first.api_url)

        second = run_cli(
            "up",
            "--definitions",
            str(ROOT / "definitions"),
            "--stores",
            str(stores),
            "--api-port",
            str(free_port()),
            cwd=tmp_path,
            env=first.env,
            timeout=120,
        )
        line = error_line(second)
        assert f"pid {first.pid}" in line, line
        assert stack["api_url"] in line and stack["broker_url"] in line, line

        assert _files(stores) == before  # nothing moved, written or deleted
        assert not (stores / "offline.previous").exists()
        assert sorted(p.name for p in (stores / "logs").iterdir()) == logs_before
        assert json.loads((stores / "stack.json").read_text()) == stack
        assert _values(first.api_url) == values_before
        assert "is taken" not in second.stdout  # it chose no port: it started nothing

        # A crash (kill -9) leaves no lock behind: the kernel releases it with the process.
        assert first.popen is not None
        first.popen.kill()
        first.popen.wait(timeout=30)
        with RunningUp(tmp_path, "--no-replay", stores=stores) as after:
            after.wait_output("API ready")
            assert after.stack()["pid"] == after.pid


def test_up_says_when_the_default_api_port_is_taken(tmp_path: Path) -> None:
    """`up` without --api-port takes 8000 when free, else says which port it took."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            holder.bind(("127.0.0.1", 8000))
        except OSError:
            pass  # something else already holds 8000: the same situation
        else:
            holder.listen(1)
        up = RunningUp(tmp_path, "--no-replay")
        up.argv = [a for a in up.argv if a not in ("--api-port", str(up.api_port))]
        with up:
            up.wait_output("API ready")
            port = up.stack()["api_url"].rsplit(":", 1)[1]
            assert port != "8000"
            assert f"port 8000 is taken: API on {port} (use --api-port)" in up.output
