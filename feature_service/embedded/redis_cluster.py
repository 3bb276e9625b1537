"""A real Redis Cluster on loopback: several processes of the same server binary.

Each node is `redis-server`/`valkey-server` with `--cluster-enabled yes` on a free port
(its cluster bus on another free port, `--cluster-port`). The 16384 hash slots are
split into equal ranges (`CLUSTER ADDSLOTSRANGE`), the nodes are introduced to each
other (`CLUSTER MEET`), and `start()` returns once every node reports `cluster_state:ok`
and knows every other node. No replicas: enough to run the service's cluster code paths
(slot routing, MOVED, one slot per entity) on one machine.

>>> with EmbeddedRedisCluster(Path("stores/cluster"), nodes=3) as cluster:  # doctest: +SKIP
...     print(cluster.url)  # redis://127.0.0.1:<port>/0, any node; clients discover the rest
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import redis

from feature_service.embedded.processes import ManagedProcess, StackError, free_port
from feature_service.embedded.redis_server import HOST, _ping, redis_binary

SLOTS = 16384


class EmbeddedRedisCluster:
    """`nodes` primaries sharing the hash slots; a context manager that cleans up."""

    def __init__(self, data_dir: Path, nodes: int = 3) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.data_dir = data_dir
        self.nodes = nodes
        self.ports: list[int] = []
        self.bus_ports: list[int] = []
        self.processes: list[ManagedProcess] = []

    @property
    def url(self) -> str:
        """A URL of one node; cluster clients (FS_REDIS_CLUSTER=true) find the others."""
        return f"redis://{HOST}:{self.ports[0]}/0"

    def start(self, timeout: float = 30.0) -> EmbeddedRedisCluster:
        binary = redis_binary()
        try:
            for i in range(self.nodes):
                self._start_node(binary, i, timeout)
            self._form(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, binary: str, index: int, timeout: float) -> None:
        port, bus = free_port(HOST), free_port(HOST)
        node_dir = self.data_dir / f"node-{index}"
        node_dir.mkdir(parents=True, exist_ok=True)
        process = ManagedProcess(
            f"redis-cluster-{index}",
            [
                binary,
                "--port",
                str(port),
                "--cluster-port",
                str(bus),
                "--bind",
                HOST,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str((node_dir / "nodes.conf").resolve()),
                "--cluster-node-timeout",
                "2000",
                "--dir",
                str(node_dir.resolve()),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--loglevel",
                "warning",
            ],
            log_path=self.data_dir / f"node-{index}.log",
        ).start()
        self.ports.append(port)
        self.bus_ports.append(bus)
        self.processes.append(process)
        url = f"redis://{HOST}:{port}/0"
        process.wait_until(lambda: _ping(url), timeout, "answering PING")

    def _client(self, port: int) -> redis.Redis:
        return redis.Redis(host=HOST, port=port, socket_timeout=5)

    def _form(self, timeout: float) -> None:
        share = SLOTS // self.nodes
        for i, port in enumerate(self.ports):
            first = i * share
            last = SLOTS - 1 if i == self.nodes - 1 else first + share - 1
            with self._client(port) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        with self._client(self.ports[0]) as client:
            for port, bus in zip(self.ports[1:], self.bus_ports[1:], strict=True):
                client.execute_command("CLUSTER", "MEET", HOST, port, bus)

        def formed() -> bool:
            for port in self.ports:
                with self._client(port) as client:
                    info = client.execute_command("CLUSTER", "INFO")
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    if "cluster_state:ok" not in text:
                        return False
                    if f"cluster_known_nodes:{self.nodes}" not in text:
                        return False
            return True

        self.processes[0].wait_until(formed, timeout, "a formed cluster")

    def stop(self) -> None:
        for process in self.processes:
            process.stop()

    def __enter__(self) -> EmbeddedRedisCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["EmbeddedRedisCluster", "StackError"]
