"""SASL_SSL against a real Kafka broker: a CA and a broker certificate made here, SCRAM users.

The worker (Faust and its dead-letter producer), the producer, the admin calls and the
lag reader all connect through `FS_KAFKA_*` (`core.kafka.KafkaConnection`); with the
right password the stream works end to end, with a wrong one the worker stops at once
with one line that says so.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from feature_service.core.kafka import KafkaConnection
from feature_service.embedded import EmbeddedKafka, EmbeddedStack
from feature_service.embedded.processes import free_port
from feature_service.observability.pipeline import BrokerOffsets, read_pipeline_status
from feature_service.stream.producer import produce_messages
from feature_service.stream.topics import ensure_topics
from tests.conditions import wait_for
from tests.integration.running_up import error_line, run_cli
from tests.integration.streaming import (
    make_events,
    messages,
    start_worker,
    stats,
    write_definitions,
)

pytestmark = [pytest.mark.integration, pytest.mark.kafka_only]

USER, PASSWORD = "feature-service", "s3cret-Pa55"
KEYSTORE_PASSWORD = "keystore-pass"
CLI = [sys.executable, "-m", "feature_service.cli.main"]


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca_and_keystore(folder: Path) -> tuple[Path, Path]:
    """A CA (PEM, for the clients) and a PKCS#12 keystore with a broker certificate it
    signed for 127.0.0.1 and localhost (for the broker)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("feature-service test CA"))
        .issuer_name(_name("feature-service test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    keystore = folder / "broker.p12"
    keystore.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"broker",
            key,
            cert,
            [ca],
            serialization.BestAvailableEncryption(KEYSTORE_PASSWORD.encode()),
        )
    )
    return ca_file, keystore


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedKafka, Path]]:
    """A Kafka broker whose client listener is SASL_SSL with SCRAM-SHA-512 only."""
    folder = tmp_path_factory.mktemp("secured-kafka")
    ca_file, keystore = make_ca_and_keystore(folder)
    port = free_port()
    broker = EmbeddedKafka(
        folder / "kafka",
        folder / "logs",
        extra_listeners={"SASL_SSL": ("SASL_SSL", port)},
        extra_properties={
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(keystore),
            "ssl.keystore.password": KEYSTORE_PASSWORD,
            "ssl.key.password": KEYSTORE_PASSWORD,
        },
        scram_users=[f"SCRAM-SHA-512=[name={USER},password={PASSWORD}]"],
    ).start()
    try:
        yield broker, ca_file
    finally:
        broker.stop()


def sasl_env(broker: EmbeddedKafka, ca_file: Path, password: str) -> dict[str, str]:
    port = broker.extra_listeners["SASL_SSL"][1]
    return {
        "FS_BROKER_URL": f"127.0.0.1:{port}",
        "FS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "FS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "FS_KAFKA_SASL_USERNAME": USER,
        "FS_KAFKA_SASL_PASSWORD": password,
        "FS_KAFKA_SSL_CA_FILE": str(ca_file),
    }


def connection(env: dict[str, str]) -> KafkaConnection:
    return KafkaConnection(
        env["FS_BROKER_URL"],
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        username=env["FS_KAFKA_SASL_USERNAME"],
        password=env["FS_KAFKA_SASL_PASSWORD"],
        ca_file=Path(env["FS_KAFKA_SSL_CA_FILE"]),
    )


def test_worker_producer_admin_and_lag_work_over_sasl_ssl(
    secured: tuple[EmbeddedKafka, Path], stack: EmbeddedStack, tmp_path: Path
) -> None:
    broker, ca_file = secured
    env = sasl_env(broker, ca_file, PASSWORD)
    conn = connection(env)
    definitions, registry = write_definitions(tmp_path, partitions=3)
    source = next(iter(registry.sources.values()))
    events = make_events(3_000, seed=5, bad_every=500)
    bad = len(events) // 500  # every 500th event is malformed (see make_events)
    created = asyncio.run(ensure_topics(conn, registry))  # admin over SASL_SSL
    assert set(created) == {source.topic, source.dlq_topic}
    assert asyncio.run(produce_messages(conn, source, messages(events))) == len(events)
    client = redis.Redis.from_url(stack.redis.url)
    worker = start_worker(stack, definitions, tmp_path / "offline", extra_env=env)
    try:
        wait_for(
            lambda: (
                sum(stats(client, registry).get(k, 0) for k in ("events", "dlq")) >= len(events)
            ),
            120,
            "every event processed over SASL_SSL",
            worker,
        )
    finally:
        worker.stop()
    counters = stats(client, registry)
    assert (counters["events"], counters["dlq"]) == (len(events) - bad, bad)

    async def lag() -> int | None:
        aio = redis.asyncio.Redis.from_url(stack.redis.url)
        try:
            status = await read_pipeline_status(aio, registry, BrokerOffsets(conn))
        finally:
            await aio.aclose()
        assert status.broker_error is None
        return status.source(source.name).lag

    assert asyncio.run(lag()) == 0
    # `status` reads the same settings from the environment
    out = subprocess.run(
        [*CLI, "status", "--json", "-d", str(definitions)],
        env={**stack.env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    status = json.loads(out.stdout)
    assert status["broker_error"] is None and status["sources"][0]["lag"] == 0


def test_a_wrong_password_stops_the_worker_with_one_clear_line(
    secured: tuple[EmbeddedKafka, Path], stack: EmbeddedStack, tmp_path: Path
) -> None:
    broker, ca_file = secured
    env = sasl_env(broker, ca_file, "wrong-password")
    definitions, _ = write_definitions(tmp_path, partitions=1)
    line = error_line(run_cli("worker", "-d", str(definitions), env={**stack.env(), **env}))
    assert "authentication failed" in line.lower(), line
    assert USER in line and "wrong-password" not in line
