"""A client of the Confluent Schema Registry REST API (also served by Apicurio's
`/apis/ccompat/v7`, Redpanda, Karapace and Confluent Cloud): schemas by id, and a
subject's schema registered or looked up. Writer schemas are immutable per id, so they
are cached for the life of the client; a registry that cannot be reached raises
`RegistryUnavailable` (the worker waits and retries, never drops events), an id the
registry does not know is `None`.

Credentials and TLS come from the `FS_SCHEMA_REGISTRY_*` settings (`RegistryAccess`).

>>> registry = SchemaRegistry("http://127.0.0.1:8081")  # doctest: +SKIP
>>> asyncio.run(registry.schema(1))  # doctest: +SKIP
RegisteredSchema(id=1, schema_type='AVRO', text='{"type": "record", ...}')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
TIMEOUT_S = 10.0


class RegistryUnavailable(RuntimeError):
    """The registry could not be reached or answered with a server error."""


class RegistryRefused(ValueError):
    """The registry refused a request (e.g. a schema incompatible with its subject)."""


@dataclass(frozen=True)
class RegisteredSchema:
    """A schema as the registry holds it under an id."""

    id: int
    schema_type: str  # AVRO, PROTOBUF or JSON
    text: str


@dataclass(frozen=True)
class RegistryAccess:
    """How to authenticate to the registry and verify its certificate."""

    username: str | None = None
    password: str | None = None
    token: str | None = None
    ca_file: str | None = None

    @classmethod
    def from_environment(cls) -> RegistryAccess:
        """From `FS_SCHEMA_REGISTRY_USERNAME`/`_PASSWORD` (basic auth), `_TOKEN`
        (bearer) and `_CA_FILE` (TLS), as the services and the CLI read them."""
        env = os.environ.get
        return cls(
            username=env("FS_SCHEMA_REGISTRY_USERNAME") or None,
            password=env("FS_SCHEMA_REGISTRY_PASSWORD") or None,
            token=env("FS_SCHEMA_REGISTRY_TOKEN") or None,
            ca_file=env("FS_SCHEMA_REGISTRY_CA_FILE") or None,
        )

    def client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "timeout": TIMEOUT_S,
            "headers": {"Accept": CONTENT_TYPE, "Content-Type": CONTENT_TYPE},
        }
        if self.token:
            kwargs["headers"]["Authorization"] = f"Bearer {self.token}"
        elif self.username:
            kwargs["auth"] = (self.username, self.password or "")
        if self.ca_file:
            kwargs["verify"] = self.ca_file
        return kwargs


class SchemaRegistry:
    """One registry, by its base URL (e.g. `http://host:8081` or Apicurio's
    `http://host:8080/apis/ccompat/v7`)."""

    def __init__(self, url: str, access: RegistryAccess | None = None) -> None:
        self.url = url.rstrip("/")
        self.access = access or RegistryAccess.from_environment()
        self._by_id: dict[int, RegisteredSchema | None] = {}
        self._ids: dict[tuple[str, str, str], int] = {}

    def known(self, schema_id: int) -> bool:
        """Whether `schema_id` was fetched already (found or not)."""
        return schema_id in self._by_id

    def cached(self, schema_id: int) -> RegisteredSchema | None:
        """The schema of an id fetched already; None for an id the registry lacks."""
        return self._by_id.get(schema_id)

    async def schema(self, schema_id: int) -> RegisteredSchema | None:
        """The schema registered under `schema_id`; None if the registry has no such id."""
        if schema_id not in self._by_id:
            body = await self._request("GET", f"/schemas/ids/{schema_id}", missing_ok=True)
            self._by_id[schema_id] = (
                None
                if body is None
                else RegisteredSchema(
                    schema_id, str(body.get("schemaType") or "AVRO"), str(body["schema"])
                )
            )
        return self._by_id[schema_id]

    async def register(self, subject: str, schema_type: str, text: str) -> int:
        """The id of `text` under `subject`, registering it as a new version if the
        subject does not hold it yet (the registry checks compatibility)."""
        key = (subject, schema_type, text)
        if key not in self._ids:
            payload = {"schema": text, "schemaType": schema_type}
            body = await self._request("POST", f"/subjects/{_quoted(subject)}/versions", payload)
            assert body is not None
            self._ids[key] = int(body["id"])
            self._by_id[self._ids[key]] = RegisteredSchema(self._ids[key], schema_type, text)
        return self._ids[key]

    def latest(self, subject: str) -> RegisteredSchema:
        """The newest version of `subject` (read when definitions load: synchronous)."""
        try:
            with httpx.Client(**self.access.client_kwargs()) as client:
                reply = client.get(f"{self.url}/subjects/{_quoted(subject)}/versions/latest")
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"schema registry {self.url}: {_why(exc)}") from None
        body = _body(reply, self.url, missing_ok=True)
        if body is None:
            raise RegistryRefused(f"schema registry {self.url} has no subject {subject!r}")
        return RegisteredSchema(
            int(body["id"]), str(body.get("schemaType") or "AVRO"), str(body["schema"])
        )

    async def _request(
        self, method: str, path: str, payload: Any = None, missing_ok: bool = False
    ) -> dict[str, Any] | None:
        try:
            async with httpx.AsyncClient(**self.access.client_kwargs()) as client:
                reply = await client.request(method, self.url + path, json=payload)
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"schema registry {self.url}: {_why(exc)}") from None
        return _body(reply, self.url, missing_ok)


def _body(reply: httpx.Response, url: str, missing_ok: bool) -> dict[str, Any] | None:
    if reply.status_code == 404 and missing_ok:
        return None
    if reply.status_code >= 500:
        raise RegistryUnavailable(f"schema registry {url}: HTTP {reply.status_code}")
    if reply.status_code >= 400:
        try:
            message = reply.json().get("message", reply.text)
        except ValueError:
            message = reply.text
        raise RegistryRefused(f"schema registry {url}: HTTP {reply.status_code}: {message}")
    body = reply.json()
    if not isinstance(body, dict):
        raise RegistryRefused(f"schema registry {url}: unexpected answer {reply.text[:200]!r}")
    return body


def _quoted(subject: str) -> str:
    return quote(subject, safe="")


def _why(exc: httpx.HTTPError) -> str:
    return str(exc) or type(exc).__name__


_REGISTRIES: dict[str, SchemaRegistry] = {}


def registry_at(url: str) -> SchemaRegistry:
    """The client of the registry at `url`, one per process, so that the schemas and
    ids it fetched are fetched once."""
    registry = _REGISTRIES.get(url)
    if registry is None:
        registry = _REGISTRIES[url] = SchemaRegistry(url)
    return registry
