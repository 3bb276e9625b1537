"""What `feature-service up` does when a process of its stack dies or hangs.

- The worker or the API exits: it is started again after a backoff that doubles from
  1 s to at most 30 s, and starts from 1 s again once the process had stayed up 60 s; a
  worker that stopped with code 0 (to run new definitions) is started again at once.
- The API stops answering: `/health/live` is probed every tick with a 2 s timeout; after
  3 failures in a row the API is killed (a hung process would not act on SIGTERM, and it
  still holds the port) and started again like one that died.
- Redis exits: a new one is started on the same port (clients reconnect there), empty
  (beside Kafka: with its append-only file), and the worker is started again so that
  it replays from the topics, which still hold every event, what Redis does not have.
- The embedded Kafka broker exits: it is started again on the same port with its data
  folder, so topics and offsets are kept; the worker waits for it and resumes.
- The Tansu broker exits: its topics were in memory and are gone. A new one is started on the
  same port, the source topics are created again and the stores start clean
  (`EmbeddedStack.start_clean`); events must be sent again.

Each of these is said in one line through `warn`. A server that cannot be started
again raises `StackError`, which stops `up` with that error.

>>> Supervisor(stack, registry, definitions, say=print, warn=print).run()  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from feature_service.embedded.processes import ManagedProcess, StackError
from feature_service.embedded.stack import EmbeddedStack

TICK_S = 0.5
LIVENESS_TIMEOUT_S = 2.0
LIVENESS_FAILURES = 3
_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")


@dataclass
class RestartBackoff:
    """Exponential backoff between starts of a process that keeps dying.

    >>> backoff = RestartBackoff()
    >>> [backoff.next_delay(uptime_s=0.5) for _ in range(7)]
    [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    >>> backoff.next_delay(uptime_s=120.0)  # it had stayed up: a new crash, not a loop
    1.0
    """

    first_s: float = 1.0
    cap_s: float = 30.0
    reset_after_s: float = 60.0
    _next_s: float | None = None

    def next_delay(self, uptime_s: float) -> float:
        """The wait before the next start of a process that ran `uptime_s` and died."""
        if self._next_s is None or uptime_s >= self.reset_after_s:
            self._next_s = self.first_s
        delay = self._next_s
        self._next_s = min(delay * 2, self.cap_s)
        return delay


@dataclass
class _Child:
    """A restartable process of the stack (the worker or the API) and its restart state."""

    name: str
    started_at: float
    backoff: RestartBackoff = field(default_factory=RestartBackoff)
    restart_at: float | None = None  # a restart is due then
    liveness_failures: int = 0


class Supervisor:
    """Watches the stack `up` started and keeps it running; `run()` returns only by an
    exception (KeyboardInterrupt on Ctrl-C or SIGTERM, StackError when a server cannot
    be started again)."""

    def __init__(
        self,
        stack: EmbeddedStack,
        registry: Any,
        definitions: Path,
        say: Callable[[str], None],
        warn: Callable[[str], None],
    ) -> None:
        self.stack = stack
        self.registry = registry
        self.definitions = definitions
        self.say = say
        self.warn = warn
        now = time.monotonic()
        self.children = {"worker": _Child("worker", now), "api": _Child("api", now)}

    def run(self) -> None:
        while True:
            self.tick()
            time.sleep(TICK_S)  # a supervision tick, not synchronisation

    def tick(self) -> None:
        """One look at every process: restart what died or hangs, or is due a restart."""
        broker, redis = self.stack.broker.process, self.stack.redis.process
        if broker is not None and not broker.alive():
            self._restart_broker(broker)
        elif redis is not None and not redis.alive():
            self._restart_redis(redis)
        for child in self.children.values():
            self._watch(child)

    def _process(self, child: _Child) -> ManagedProcess:
        process = self.stack.worker if child.name == "worker" else self.stack.api
        assert process is not None, f"{child.name} was never started"
        return process

    def _watch(self, child: _Child) -> None:
        process = self._process(child)
        now = time.monotonic()
        if child.restart_at is not None:
            if now >= child.restart_at:
                self._start(child)
            return
        if not process.alive():
            code = process.returncode()
            if child.name == "worker" and code == 0:  # it stopped to run new definitions
                self.say("worker stopped to run new definitions; restarting")
                self._start(child)
                return
            # A process that exits on its own (code > 0) said why last; a signal says nothing.
            why = _last_line(process) if code is not None and code > 0 else ""
            self._schedule(child, f"{child.name} exited with code {code}{why}")
            return
        if child.name == "api" and not self._answers_liveness():
            child.liveness_failures += 1
            if child.liveness_failures >= LIVENESS_FAILURES:
                pid = process.pid
                process.kill()
                self._schedule(
                    child,
                    f"api did not answer /health/live {child.liveness_failures} times in a row "
                    f"({LIVENESS_TIMEOUT_S:g} s timeout); killed it (pid {pid})",
                )
        else:
            child.liveness_failures = 0

    def _schedule(self, child: _Child, reason: str) -> None:
        delay = child.backoff.next_delay(time.monotonic() - child.started_at)
        child.restart_at = time.monotonic() + delay
        self.warn(f"{reason}; restarting in {delay:g} s")

    def _start(self, child: _Child) -> None:
        process = self._process(child)
        process.stop()
        process.start()
        child.started_at = time.monotonic()
        child.restart_at = None
        child.liveness_failures = 0
        if child.name == "api":
            with contextlib.suppress(StackError):  # it died starting: the next tick backs off
                self.stack.wait_api()

    def _answers_liveness(self) -> bool:
        try:
            response = httpx.get(f"{self.stack.api_url}/health/live", timeout=LIVENESS_TIMEOUT_S)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _restart_redis(self, redis: ManagedProcess) -> None:
        code = redis.returncode()
        self.stack.restart_redis()
        self._start(self.children["worker"])
        if self.stack.redis.persist:
            self.warn(
                f"redis exited with code {code}; restarted it on port {self.stack.redis.port} "
                "with its append-only file and restarted the worker: it replays from the "
                "broker's topics whatever the file missed"
            )
            return
        self.warn(
            f"redis exited with code {code}; restarted it empty on port {self.stack.redis.port} "
            "and restarted the worker: online state was in memory only; the worker rebuilds it "
            "by replaying the broker's topics, which still hold every event"
        )

    def _restart_broker(self, broker: ManagedProcess) -> None:
        from feature_service.definitions import DefinitionError, load_definitions
        from feature_service.stream.topics import ensure_topics

        code = broker.returncode()
        if self.stack.broker_kind == "kafka":
            self.stack.restart_broker()
            if self.stack.broker.keeps_topics:  # the worker waits for it and resumes
                self.warn(
                    f"broker exited with code {code}; restarted it on port "
                    f"{self.stack.broker.port} with its data folder: topics and offsets kept"
                )
                return
        worker = self._process(self.children["worker"])
        worker.stop()  # nothing may write the stores while they are made clean
        if self.stack.broker_kind != "kafka":
            self.stack.restart_broker()
        cleaned = self.stack.start_clean()
        try:
            registry = load_definitions(self.definitions)
        except DefinitionError:
            registry = self.registry  # the worker will say what is wrong; topics still needed
        asyncio.run(ensure_topics(self.stack.broker.bootstrap, registry))
        self._start(self.children["worker"])
        self.warn(
            f"broker exited with code {code}; restarted it on port {self.stack.broker.port}: "
            "its topics were in memory and are lost, so online state was emptied"
            + (f"; {cleaned}" if cleaned else "")
            + "; send the events again"
        )


def _last_line(process: ManagedProcess) -> str:
    """` (<the last line of its log>)`, why a process exited, as far as it said."""
    lines = [
        clean  # without terminal codes, e.g. a spinner's cursor ones
        for line in process.log_tail(5).splitlines()
        if (clean := _TERMINAL_CODES.sub("", line).strip())
    ]
    if not lines:
        return ""
    last = lines[-1]
    return f" ({last[:300]}{'...' if len(last) > 300 else ''})"
