"""`feature-service up`: the stack in the foreground, found by others, stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis

from feature_service.embedded.processes import free_port, port_open
from feature_service.online.redis_layout import stats_key
from tests.conditions import wait_for
from tests.integration.running_up import healthy, listener_pid, pid_of_child, run_cli

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_up_serves_restarts_the_api_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    stores = tmp_path / "stores"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FS_")}
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "feature_service.cli.main",
            "up",
            "--definitions",
            str(ROOT / "definitions"),
            "--api-port",
            str(port),
            "--stores",
            str(stores),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: described(stores, url), what="stack.json to name the API")
        assert healthy(url)
        stack = json.loads((stores / "stack.json").read_text())
        assert stack["api_url"] == url and stack["pid"] == up.pid
        views = httpx.get(f"{url}/feature-views").json()
        assert {v["name"] for v in views} >= {"customer_txn"}
        assert httpx.get(f"{url}/feature-views/nope").status_code == 404

        # The bundled sample is replayed through the worker: every line is counted once,
        # accepted or dead-lettered (the sample has 15 malformed lines).
        sample_lines = sum(
            1 for line in (ROOT / "definitions/sample/transactions.jsonl").open() if line.strip()
        )
        client = redis.Redis.from_url(stack["redis_url"])

        def counted() -> int:
            raw = client.hgetall(stats_key("transactions"))
            return int(raw.get(b"events", 0)) + int(raw.get(b"dlq", 0))

        wait_for(lambda: counted() >= sample_lines, what="the sample to be processed")
        assert int(client.hget(stats_key("transactions"), "dlq")) == 15

        # A dead worker and a dead API are restarted by the supervisor.
        worker_pid = pid_of_child(up.pid, "worker")
        os.kill(worker_pid, signal.SIGKILL)
        wait_for(lambda: pid_of_child(up.pid, "worker") not in (None, worker_pid), what="worker")
        api_pid = _listener_pid(port)
        os.kill(api_pid, signal.SIGKILL)
        wait_for(lambda: healthy(url) and _listener_pid(port) != api_pid, what="API restart")

        up.send_signal(signal.SIGTERM)
        out, _ = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, out
    assert "API ready" in out
    assert "worker exited with code -9; restarting" in out
    assert "api exited with code -9; restarting" in out
    broker_port = int(stack["broker_url"].rsplit(":", 1)[1])
    redis_port = int(stack["redis_url"].rsplit(":", 1)[1].split("/")[0])
    for p in (port, broker_port, redis_port):
        assert not port_open("127.0.0.1", p), f"port {p} still open after shutdown"
    assert not (stores / "stack.json").exists()


def described(stores: Path, url: str) -> bool:
    try:
        return json.loads((stores / "stack.json").read_text()).get("api_url") == url
    except (OSError, ValueError):
        return False


def _listener_pid(port: int) -> int:
    pid = listener_pid(port)
    assert pid is not None, f"nothing listens on {port}"
    return pid


def test_up_refuses_bad_definitions_before_starting(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("feature_views:\n  - name: v\n    source: nope\n")
    result = run_cli("up", "--definitions", str(tmp_path), "--stores", str(tmp_path / "stores"))
    assert result.returncode == 1
    assert "bad.yaml: feature_views[0]" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "stores").exists()


def test_validate_command_reports_ok_and_errors(tmp_path: Path) -> None:
    ok = run_cli("validate", str(ROOT / "definitions"))
    assert ok.returncode == 0 and ok.stdout.startswith("ok:"), ok.stderr
    (tmp_path / "bad.yaml").write_text("entities:\n  - name: c\n    joinkey: c_id\n")
    bad = run_cli("validate", str(tmp_path))
    assert bad.returncode == 1
    assert "bad.yaml: entities[0].joinkey: unknown key" in bad.stderr
    assert "Traceback" not in bad.stderr
