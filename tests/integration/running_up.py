"""`feature-service up` as a real subprocess for tests: its output read as it comes.

>>> with RunningUp(tmp_path, "--no-replay") as up:  # doctest: +SKIP
...     up.wait_output("API ready")
...     pid = listener_pid(up.api_port)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from feature_service.embedded.processes import free_port
from tests.conditions import wait_for

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any FS_ setting (as a user's shell), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FS_")}
    env.update(extra)
    return env


class RunningUp:
    """`feature-service up` started in `cwd` with `args`; stopped (SIGTERM) on exit."""

    def __init__(
        self,
        cwd: Path,
        *args: str,
        stores: Path | None = None,
        definitions: Path = ROOT / "definitions",
        env: dict[str, str] | None = None,
    ) -> None:
        self.cwd = cwd
        self.stores = stores if stores is not None else cwd / "stores"
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.argv = [
            sys.executable,
            "-m",
            "feature_service.cli.main",
            "up",
            "--definitions",
            str(definitions),
            "--api-port",
            str(self.api_port),
            "--stores",
            str(self.stores),
            *args,
        ]
        self.env = env if env is not None else clean_env()
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.popen: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> RunningUp:
        self.popen = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.popen is not None and self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_output(self, text: str, timeout: float = 90) -> None:
        """Wait until `text` appears in the output; fail early if `up` exits."""

        def seen() -> bool:
            if text in self.output:
                return True
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise AssertionError(f"up exited ({self.popen.returncode}):\n{self.output}")
            return False

        try:
            wait_for(seen, timeout=timeout, what=repr(text))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\noutput so far:\n{self.output}") from None

    def stack(self) -> dict[str, Any]:
        return dict(json.loads((self.stores / "stack.json").read_text()))

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, wait; the exit code."""
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return int(self.popen.returncode)

    def __enter__(self) -> RunningUp:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def live(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/live", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def listener_pid(port: int) -> int | None:
    """The pid listening on a loopback TCP port, from /proc (no psutil needed)."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
                inode = fields[9]
    if inode is None:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) == f"socket:[{inode}]":
                    return int(proc.name)
        except OSError:
            continue
    return None


def pid_of_child(parent: int, command: str) -> int | None:
    """Pid of the child of `parent` whose command line ends with `command`."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and argv[-2:-1] == [command.encode()]:
            return int(proc.name)
    return None


def port_of(url: str) -> int:
    """The port of `127.0.0.1:9092`, `redis://127.0.0.1:6379/0` or `http://h:8000`."""
    return int(url.rsplit(":", 1)[1].split("/")[0])


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "feature_service.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def error_line(run: subprocess.CompletedProcess[str]) -> str:
    """The one line a command that failed (exit code 1) printed on stderr."""
    assert run.returncode == 1, run.stdout + run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    return lines[0]
