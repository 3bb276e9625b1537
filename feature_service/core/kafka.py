"""How every Kafka client of the service connects: bootstrap servers, SASL and TLS.

One owner for the client settings: the worker (Faust and its dead-letter producer), the
producer of `feature-service produce` and `up`, `/push` and the SDK, the admin calls that
create topics, and the lag reader of `status`, `/health` and `/metrics` all build their
clients from a `KafkaConnection`, normally `Settings.kafka` (`FS_BROKER_URL` and the
`FS_KAFKA_*` settings).

>>> conn = KafkaConnection("b-1.msk.example:9096", security_protocol="SASL_SSL",
...                       sasl_mechanism="SCRAM-SHA-512", username="fs", password="secret")
>>> conn.aiokafka_kwargs()["sasl_mechanism"], conn.describe()
('SCRAM-SHA-512', 'SASL_SSL SCRAM-SHA-512 as fs to b-1.msk.example:9096')
>>> KafkaConnection("127.0.0.1:9092").aiokafka_kwargs()
{'bootstrap_servers': '127.0.0.1:9092', 'security_protocol': 'PLAINTEXT'}
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@dataclass(frozen=True)
class KafkaConnection:
    """Bootstrap servers and the security the cluster asks for.

    `security_protocol` as Kafka names it; SASL_* need `username` and `password`;
    `ca_file` is the PEM bundle that signed the brokers' certificates (default: the
    system's); `cert_file`/`key_file` a client certificate, for clusters that ask for one.
    """

    bootstrap: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: str | None = None
    check_hostname: bool = True

    def __post_init__(self) -> None:
        if self.uses_sasl and (not self.username or self.password is None):
            raise ValueError(
                f"FS_KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs "
                "FS_KAFKA_SASL_USERNAME and FS_KAFKA_SASL_PASSWORD"
            )
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("FS_KAFKA_SSL_CERT_FILE and FS_KAFKA_SSL_KEY_FILE go together")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"FS_KAFKA_SSL_{name.upper()}: no such file {path}")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def first_address(self) -> tuple[str, int]:
        """Host and port of the first bootstrap server (for a plain TCP probe)."""
        host, _, port = self.bootstrap.split(",")[0].strip().rpartition(":")
        return host.strip("[]"), int(port)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of SSL and SASL_SSL (None otherwise)."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None
        )
        context.check_hostname = self.check_hostname
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file), self.key_password)
        return context

    def security_kwargs(self) -> dict[str, Any]:
        """aiokafka's security arguments (no bootstrap servers)."""
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            kwargs.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password,
            )
        return kwargs

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
        return {"bootstrap_servers": self.bootstrap, **self.security_kwargs()}

    def faust_broker(self) -> str:
        """Faust's `broker` URL (`kafka://host:port;host2:port`)."""
        hosts = [h.strip() for h in self.bootstrap.split(",") if h.strip()]
        return ";".join(f"kafka://{h}" for h in hosts)

    def faust_credentials(self) -> Any:
        """Faust's `broker_credentials` (None for PLAINTEXT)."""
        import faust

        if self.uses_sasl:
            return faust.SASLCredentials(
                username=self.username,
                password=self.password,
                ssl_context=self.ssl_context(),
                mechanism=self.sasl_mechanism,
            )
        if self.uses_tls:
            return faust.SSLCredentials(self.ssl_context())
        return None

    def describe(self) -> str:
        """`SASL_SSL SCRAM-SHA-512 as fs to host:9096`: for error messages, no secrets."""
        who = f" {self.sasl_mechanism} as {self.username}" if self.uses_sasl else ""
        return f"{self.security_protocol}{who} to {self.bootstrap}"


class KafkaAuthError(ValueError):
    """The cluster refused our credentials or our TLS: retrying cannot help."""


async def check_credentials(conn: KafkaConnection, timeout_s: float = 10.0) -> None:
    """Connect to the first bootstrap server that answers and authenticate as `conn` says.

    Raises `KafkaAuthError`, in one line without the password, when SASL or TLS fails;
    aiokafka's own clients only say "Unable to bootstrap" then. A server that cannot be
    reached is left to the clients (they wait and retry). PLAINTEXT has nothing to check.
    """
    if not (conn.uses_sasl or conn.uses_tls):
        return
    import ssl as ssl_module

    from aiokafka.conn import create_conn
    from aiokafka.errors import SaslAuthenticationFailed, UnsupportedSaslMechanismError

    kwargs = conn.security_kwargs()
    for server in (h.strip() for h in conn.bootstrap.split(",") if h.strip()):
        host, _, port = server.rpartition(":")
        try:
            link = await asyncio.wait_for(
                create_conn(
                    host.strip("[]"), int(port), request_timeout_ms=int(timeout_s * 1000), **kwargs
                ),
                timeout_s,
            )
        except (SaslAuthenticationFailed, UnsupportedSaslMechanismError) as exc:
            raise KafkaAuthError(
                f"Kafka authentication failed ({conn.describe()}): {_reason(exc)}"
            ) from None
        except ssl_module.SSLError as exc:
            raise KafkaAuthError(f"Kafka TLS failed ({conn.describe()}): {exc}") from None
        except (OSError, TimeoutError):
            continue
        link.close()
        return


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith("[Error") and ": " in text else text


def kafka_connection(broker: KafkaConnection | str) -> KafkaConnection:
    """A connection from bootstrap servers (PLAINTEXT) or the connection itself."""
    return broker if isinstance(broker, KafkaConnection) else KafkaConnection(broker)
