"""Waiting on a condition with a deadline: the tests' only way to synchronise."""

from __future__ import annotations

import time
from collections.abc import Callable

from feature_service.embedded import ManagedProcess


def wait_for(
    condition: Callable[[], bool],
    timeout: float = 60.0,
    what: str = "condition",
    process: ManagedProcess | None = None,
) -> None:
    """Poll `condition` until true; fail after `timeout`, or at once if `process` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and not process.alive():
            raise AssertionError(
                f"{process.name} died while waiting for {what}:\n{process.log_tail(40)}"
            )
        time.sleep(0.05)
    tail = f"\n{process.log_tail(40)}" if process is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{tail}")
