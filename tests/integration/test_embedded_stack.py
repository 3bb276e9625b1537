"""The embedded stack runs real servers, reports problems clearly and leaves nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from feature_service.embedded import EmbeddedRedis, EmbeddedStack, StackError
from feature_service.embedded.broker import EmbeddedBroker
from feature_service.embedded.processes import port_open
from tests.conditions import wait_for

pytestmark = pytest.mark.integration


def test_broker_round_trips_a_message(stack: EmbeddedStack) -> None:
    async def round_trip() -> list[tuple[bytes | None, bytes | None]]:
        # Created first: Kafka, like managed clusters, does not create topics on a send.
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.broker.bootstrap)
        await admin.start()
        try:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic("roundtrip", 1, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=stack.broker.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait("roundtrip", b'{"x": 1}', key=b"c1")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            "roundtrip",
            bootstrap_servers=stack.broker.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            got: list[tuple[bytes | None, bytes | None]] = []
            async with asyncio.timeout(20):
                while not got:
                    batches = await consumer.getmany(timeout_ms=500)
                    got += [(m.key, m.value) for ms in batches.values() for m in ms]
            return got
        finally:
            await consumer.stop()

    assert asyncio.run(round_trip()) == [(b"c1", b'{"x": 1}')]


def test_redis_is_a_real_server(redis_client) -> None:  # type: ignore[no-untyped-def]
    redis_client.hset("entity:c1", mapping={"a": 1})
    redis_client.expire("entity:c1", 100)
    assert redis_client.hgetall("entity:c1") == {b"a": b"1"}
    assert 0 < redis_client.ttl("entity:c1") <= 100
    assert redis_client.info("server")["tcp_port"] == int(stack_port(redis_client))


def stack_port(client) -> int:  # type: ignore[no-untyped-def]
    return int(client.connection_pool.connection_kwargs["port"])


def test_taken_port_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(
            StackError, match=f"cannot start Redis: port {port} on 127.0.0.1 is already in use"
        ):
            EmbeddedRedis(tmp_path, tmp_path, port=port).start()


def test_missing_broker_binary_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", str(tmp_path / "no-such-tansu"))
    with pytest.raises(StackError, match=r"no broker binary: .*no-such-tansu"):
        EmbeddedBroker(tmp_path).start()


def test_stack_stops_every_process_on_exit(tmp_path: Path) -> None:
    with EmbeddedStack(tmp_path) as stack:
        ports = [stack.broker.port, stack.redis.port]
        pids = [stack.broker.process.pid, stack.redis.process.pid]  # type: ignore[union-attr]
        assert all(port_open("127.0.0.1", p) for p in ports)  # type: ignore[arg-type]
    assert not any(port_open("127.0.0.1", p) for p in ports)  # type: ignore[arg-type]
    assert not any(_alive(pid) for pid in pids)  # type: ignore[arg-type]
    assert (tmp_path / "logs" / "broker.log").exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_servers_die_when_their_parent_is_killed(tmp_path: Path) -> None:
    """No orphans even if the process that started the stack is SIGKILLed."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from feature_service.embedded import EmbeddedStack
        stack = EmbeddedStack(Path({str(tmp_path)!r})).start()
        print(stack.broker.process.pid, stack.redis.process.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    wait_for(lambda: not any(_alive(p) for p in pids), what="servers to exit")
