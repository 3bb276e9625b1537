"""One `feature-service up` per stores folder: an exclusive lock held for its lifetime.

`up` takes `<stores>/up.lock` with `fcntl.flock` before it starts or changes anything.
A second `up` in the same folder fails to take it and stops with one line naming the
running stack (its pid and addresses, from `stack.json`), having moved, written and
deleted nothing: were it to start, it would move the running stack's offline log aside,
write files whose offsets collide with the running worker's and delete `stack.json`
when it stops. The kernel releases the lock when the process holding it ends, however
it ends (Ctrl-C, kill -9, a crash), so a crashed `up` leaves no stale lock behind; the
file itself stays (deleting it would let two processes lock two different files).
`acquire` raises StackInUse while another `up` holds the lock.

>>> lock = StackLock(Path("stores"))  # doctest: +SKIP
>>> lock.acquire()  # doctest: +SKIP
>>> lock.release()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from feature_service.core.config import STACK_FILE_NAME
from feature_service.embedded.processes import StackError

LOCK_FILE_NAME = "up.lock"


class StackInUse(StackError):
    """Another `feature-service up` runs with the same stores folder."""


class StackLock:
    """The exclusive lock of a stores folder (`<stores>/up.lock`), held by one process."""

    def __init__(self, stores_dir: Path) -> None:
        self.stores_dir = stores_dir
        self.path = stores_dir / LOCK_FILE_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock (idempotent); raise StackInUse naming the stack that holds it."""
        if self._fd is not None:
            return
        self.stores_dir.mkdir(parents=True, exist_ok=True)
        # Opened without O_TRUNC: the holder's pid in it is only replaced once we hold it.
        # Not inherited by child processes (os.open's default), so only we hold the lock.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StackInUse(self._in_use_message()) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _in_use_message(self) -> str:
        """`<stores> is in use by a running feature-service up (pid N, API ..., ...)`."""
        pid = _read_pid(self.path)
        described = _read_stack(self.stores_dir / STACK_FILE_NAME)
        parts = [f"pid {pid}" if pid is not None else "pid unknown"]
        # stack.json describes the holder only if that process wrote it (it may still be
        # starting, with no stack.json yet, or a crashed run may have left an old one).
        if described and (pid is None or described.get("pid") == pid):
            parts += [
                f"{label} {described[field]}"
                for label, field in (
                    ("API", "api_url"),
                    ("broker", "broker_url"),
                    ("redis", "redis_url"),
                )
                if described.get(field)
            ]
        return (
            f"{self.stores_dir} is in use by a running feature-service up ({', '.join(parts)}): "
            "use that stack, stop it first, or give this one another --stores folder"
        )


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _read_stack(path: Path) -> dict[str, object] | None:
    try:
        described = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return described if isinstance(described, dict) else None
