"""FS_KAFKA_* settings become the same client arguments for aiokafka and Faust."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from feature_service.core.config import Settings
from feature_service.core.kafka import KafkaConnection


def test_sasl_ssl_settings_give_aiokafka_and_faust_the_same_credentials(tmp_path: Path) -> None:
    settings = Settings(
        broker_url="b-1.example:9096,b-2.example:9096",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="fs",
        kafka_sasl_password="secret",  # type: ignore[arg-type]
    )
    kwargs = settings.kafka.aiokafka_kwargs()
    assert kwargs["bootstrap_servers"] == "b-1.example:9096,b-2.example:9096"
    assert (kwargs["security_protocol"], kwargs["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("fs", "secret")
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    credentials = settings.kafka.faust_credentials()
    assert (credentials.username, credentials.password) == ("fs", "secret")
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_SSL"
    assert settings.kafka.faust_broker() == "kafka://b-1.example:9096;kafka://b-2.example:9096"
    assert "secret" not in settings.kafka.describe() and "secret" not in repr(settings)


def test_plaintext_is_the_default_and_has_no_faust_credentials() -> None:
    conn = Settings(broker_url="127.0.0.1:9092").kafka
    assert conn.aiokafka_kwargs() == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert conn.faust_credentials() is None


def test_incomplete_security_settings_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs FS_KAFKA_SASL_USERNAME and FS_KAFKA_SASL_PASSWORD"):
        KafkaConnection("h:1", security_protocol="SASL_PLAINTEXT")
    with pytest.raises(ValueError, match="go together"):
        KafkaConnection("h:1", security_protocol="SSL", cert_file=tmp_path / "c.pem")
    with pytest.raises(ValueError, match="no such file"):
        KafkaConnection("h:1", security_protocol="SSL", ca_file=tmp_path / "missing.pem")
