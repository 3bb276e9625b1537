"""`feature-service up` keeps its stack running: a hung API, a dead Redis or broker, a
worker that keeps dying, each handled and said in the output (issue 12, items 4, 9, 12)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from feature_service.online.redis_layout import stats_key
from tests.conditions import wait_for
from tests.integration.running_up import (
    ROOT,
    RunningUp,
    clean_env,
    listener_pid,
    live,
    pid_of_child,
    port_of,
    run_cli,
)

pytestmark = pytest.mark.integration
SAMPLE = ROOT / "definitions/sample/transactions.jsonl"
SAMPLE_LINES = sum(1 for line in SAMPLE.open() if line.strip())


def test_up_replaces_an_api_that_stopped_answering(tmp_path: Path) -> None:
    """A stopped (SIGSTOP) API still holds its port; the liveness probe notices it."""
    with RunningUp(tmp_path, "--no-replay") as up:
        up.wait_output("API ready")
        stopped = listener_pid(up.api_port)
        assert stopped is not None
        os.kill(stopped, signal.SIGSTOP)
        try:
            wait_for(
                lambda: listener_pid(up.api_port) not in (None, stopped) and live(up.api_url),
                timeout=45,
                what="a new API process answering /health/live",
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped, signal.SIGKILL)  # the supervisor should have; never leave it
        assert re.search(r"api did not answer /health/live \d+ times in a row", up.output)
        assert "api exited" not in up.output  # replaced because it hung, not because it died
        assert up.stop() == 0, up.output


def _counted(client: redis.Redis) -> int:
    raw = client.hgetall(stats_key("transactions"))
    return int(raw.get(b"events", 0)) + int(raw.get(b"dlq", 0))


def test_up_restarts_redis_and_the_broker_and_says_what_was_lost(tmp_path: Path) -> None:
    with RunningUp(tmp_path) as up:
        up.wait_output("API ready")
        stack = up.stack()
        client = redis.Redis.from_url(stack["redis_url"], socket_timeout=2)
        redis_port, broker_port = port_of(stack["redis_url"]), port_of(stack["broker_url"])

        def counted(expected: int) -> Callable[[], bool]:
            def check() -> bool:
                try:
                    return _counted(client) == expected
                except redis.RedisError:
                    return False

            return check

        def produce() -> None:
            sent = run_cli("produce", "transactions", str(SAMPLE), cwd=tmp_path, env=clean_env())
            assert sent.returncode == 0, sent.stderr

        wait_for(counted(SAMPLE_LINES), what="the sample to be processed")

        # Redis dies: a new, empty one on the same port, and a new worker, which replays the
        # topics (they still hold every event) into it: the first events and the same
        # events sent again are each counted once.
        old_redis = listener_pid(redis_port)
        assert old_redis is not None
        os.kill(old_redis, signal.SIGKILL)
        up.wait_output("redis exited with code -9; restarted it empty")
        assert listener_pid(redis_port) not in (None, old_redis)
        produce()
        wait_for(counted(2 * SAMPLE_LINES), timeout=90, what="online state rebuilt")

        # The memory-only broker dies: its topics are gone, so the stack starts clean.
        old_broker = listener_pid(broker_port)
        assert old_broker is not None
        os.kill(old_broker, signal.SIGKILL)
        up.wait_output("broker exited with code -9; restarted it")
        assert "its topics were in memory and are lost" in up.output
        assert listener_pid(broker_port) not in (None, old_broker)
        assert _counted(client) == 0  # online state of the lost topics was emptied
        assert list((tmp_path / "stores/offline.previous").rglob("*.parquet"))
        assert not list((tmp_path / "stores/offline").rglob("*.parquet"))

        # The stack works as new: the events sent again are counted once.
        produce()
        wait_for(counted(SAMPLE_LINES), timeout=90, what="the events sent again")
        assert up.popen is not None and up.popen.poll() is None
        assert up.stop() == 0, up.output


def test_up_backs_off_a_worker_that_keeps_dying_and_says_why(tmp_path: Path) -> None:
    definitions = tmp_path / "definitions"
    shutil.copytree(ROOT / "definitions", definitions)
    with RunningUp(tmp_path, definitions=definitions) as up:
        up.wait_output("API ready")
        client = redis.Redis.from_url(up.stack()["redis_url"], socket_timeout=2)
        wait_for(lambda: _counted(client) == SAMPLE_LINES, 90, "the sample in online state")
        # A view edited in place (a feature added) is refused by every worker started on it:
        # its online state was written with the old layout. (A file that does not load is
        # no longer a reason to die: a worker runs the last accepted definitions.)
        defs = definitions / "transactions.yaml"
        text = defs.read_text()
        marker = "    features:\n"
        assert marker in text
        added = "      - {name: n_6h, aggregation: count, window: 6h}\n"
        defs.write_text(text.replace(marker, marker + added, 1))
        worker = pid_of_child(up.pid, "worker")
        assert worker is not None
        os.kill(worker, signal.SIGKILL)
        up.wait_output("worker exited with code -9; restarting in 1 s")
        up.wait_output("; restarting in 2 s")
        up.wait_output("; restarting in 4 s")
        failed = [line for line in up.lines if "worker exited with code 1" in line]
        assert failed and all("features added: n_6h" in line for line in failed), up.output
        assert up.stop() == 0, up.output
