"""Who may call what, and how much they may send (DESIGN.md "Access"): one ASGI middleware,
`ApiAccess`, in front of everything that reads a request body.

For each HTTP request, before any of its body is read:

1. **Keys** (when `FS_API_KEYS` is set): every endpoint but the open ones (`OPEN_PATHS`:
   `/`, the docs, `/health`, `/metrics`, and the UI's static files under `/ui/`) needs a
   key, sent as `X-API-Key: <key>` or `Authorization: Bearer <key>`: none or a wrong
   one is a 401. An address that is no route needs a key too (no probing of what exists).
2. **Scopes**: each route declares the scope it needs with `needs(scope)` where its router
   is included (`api.app`); a key without that scope gets a 403 naming it. A route that
   is neither open nor declares a scope stops the API at start (`AccessRules.of`).
3. **Failed keys** are limited per client address (`FailedKeys`): a bucket of
   `FS_API_KEY_FAILURES_PER_MINUTE` failures, refilled at that many a minute; an address
   whose bucket is empty gets 429 with `Retry-After` on every request that needs a key,
   right or wrong (else its guesses would still tell). Each wrong key is logged at
   WARNING with the address, method and path, never the key. A request without a key
   costs nothing (a browser on the UI before its key is typed) and is logged at INFO.
4. **The body cap** (`FS_MAX_BODY_BYTES`, every request): a `Content-Length` over it is a
   413 before anything is read; a body without one (chunked) is counted as it streams
   and refused with a 413 once it passes the cap.

The counts are per API process (each uvicorn process of `serve` has its own), in memory,
for at most `FailedKeys.max_addresses` addresses (the least recently failed forgotten).
The client address is the one uvicorn reports: behind a proxy, uvicorn's
`FORWARDED_ALLOW_IPS` makes it the forwarded one.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, params
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from feature_service.core.config import ApiScope, Settings

log = logging.getLogger("feature_service.api.keys")

# Open without a key: the UI's page, the docs, probes and scrapers (no data).
OPEN_PATHS = frozenset(
    {"/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/health",
     "/health/live", "/metrics"}
)  # fmt: skip
OPEN_MOUNTS = ("/ui",)  # the UI's static files: its code, no data
_OPEN_PREFIXES = tuple(f"{mount}/" for mount in OPEN_MOUNTS)
_JSON = b"application/json"


class _AnyKey:
    """What an address that is no route needs: a valid key, whatever its scopes."""


ANY_KEY = _AnyKey()
Need = ApiScope | _AnyKey | None  # None: open


# --- declaring scopes -------------------------------------------------------------------

_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")
_bearer = HTTPBearer(auto_error=False, description="an API key as a bearer token")


class _ScopeNeeded:
    """A route's declaration that it needs `scope`. `ApiAccess` enforces it before the
    body is read; as a dependency it only puts the key schemes in the OpenAPI schema."""

    def __init__(self, scope: ApiScope) -> None:
        self.scope: ApiScope = scope

    async def __call__(
        self,
        header_key: Annotated[str | None, Depends(_key_header)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        del header_key, bearer  # read by `ApiAccess`, before the body

    def __repr__(self) -> str:
        return f"needs({self.scope!r})"


def needs(scope: ApiScope) -> list[params.Depends]:
    """Dependencies for `include_router`: the routes need a key with `scope`.

    >>> needs("write")[0].dependency
    needs('write')
    """
    return [Depends(_ScopeNeeded(scope))]


# --- which route needs what ------------------------------------------------------------


@dataclass(frozen=True)
class AccessRules:
    """The need of every route, by exact path and method, and by pattern for the rest."""

    exact: dict[tuple[str, str], tuple[Need, Any]]
    patterns: list[tuple[re.Pattern[str], frozenset[str], Need, Any]]

    @classmethod
    def of(cls, app: FastAPI) -> AccessRules:
        """Every route of `app`; RuntimeError if one is neither open nor declares a scope."""
        exact: dict[tuple[str, str], tuple[Need, Any]] = {}
        patterns: list[tuple[re.Pattern[str], frozenset[str], Need, Any]] = []
        for route in _routes(app):
            if isinstance(getattr(route, "original_route", route), Mount):
                if route.path not in OPEN_MOUNTS:
                    raise RuntimeError(f"mount {route.path} is neither open nor keyed")
                continue
            need = _need_of(route)
            methods = frozenset(route.methods or ())
            if "{" in route.path:
                patterns.append((route.path_regex, methods, need, route))
            else:
                for method in methods:
                    exact[(route.path, method)] = (need, route)
        return cls(exact, patterns)

    def need(self, path: str, method: str) -> tuple[Need, Any]:
        """What a request needs, and its route if it has one."""
        found = self.exact.get((path, method))
        if found is not None:
            return found
        if path in OPEN_PATHS or path.startswith(_OPEN_PREFIXES):  # any method: 405 or 404
            return None, None
        for pattern, methods, need, route in self.patterns:
            if method in methods and pattern.match(path):
                return need, route
        return ANY_KEY, None


def _routes(app: FastAPI) -> Iterator[Any]:
    """The routes of `app` with what their routers were included with (recent FastAPI
    keeps an included router's routes apart, and combines them as it routes)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older: included routes are copied into `app.routes` as they are
        yield from app.routes
        return
    yield from iter_route_contexts(app.routes)


def _need_of(route: Any) -> Need:
    declared = [
        d.dependency.scope
        for d in getattr(route, "dependencies", ())
        if isinstance(d.dependency, _ScopeNeeded)
    ]
    if route.path in OPEN_PATHS:
        if declared:
            raise RuntimeError(f"{route.path} is open and also declares {declared}")
        return None
    if len(declared) != 1:
        raise RuntimeError(
            f"route {route.path} must declare one scope with api.access.needs() "
            f"(it declares {declared or 'none'}), or be open (OPEN_PATHS)"
        )
    return declared[0]


# --- failed keys ------------------------------------------------------------------------


@dataclass
class FailedKeys:
    """Per client address, a token bucket of failed keys: `per_minute` of them, refilled
    at `per_minute` a minute.

    >>> limit = FailedKeys(per_minute=2)
    >>> limit.failed("10.0.0.1", now=0.0), limit.failed("10.0.0.1", now=0.0)
    (0, 30)
    >>> limit.retry_after("10.0.0.1", now=10.0), limit.retry_after("10.0.0.1", now=30.0)
    (20, 0)
    >>> limit.retry_after("10.0.0.2", now=10.0)
    0
    """

    per_minute: int
    max_addresses: int = 10_000
    # address -> (tokens left, when counted); an address with a full bucket is dropped
    _buckets: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)

    def retry_after(self, address: str, now: float) -> int:
        """Seconds until `address` may try a key again (0: now)."""
        tokens = self._tokens(address, now)
        if tokens >= 1:
            return 0
        return max(1, math.ceil(round((1 - tokens) * 60 / self.per_minute, 6)))

    def failed(self, address: str, now: float) -> int:
        """Count a failed key of `address`; how long it must now wait (0: not limited)."""
        self._buckets[address] = (self._tokens(address, now) - 1, now)
        self._buckets.move_to_end(address)
        while len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)
        return self.retry_after(address, now)

    def _tokens(self, address: str, now: float) -> float:
        bucket = self._buckets.get(address)
        if bucket is None:
            return float(self.per_minute)
        tokens, at = bucket
        tokens = min(float(self.per_minute), tokens + (now - at) * self.per_minute / 60)
        if tokens >= self.per_minute:
            del self._buckets[address]
        return tokens


# --- the middleware -----------------------------------------------------------------------


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body passes the cap; FastAPI's routes answer it as an
    HTTPException (413), and `ApiAccess` answers it for what is in front of them."""


class ApiAccess:
    """ASGI middleware: keys, scopes, the limit on failed keys and the body cap."""

    def __init__(self, app: ASGIApp, settings: Settings, rules: AccessRules) -> None:
        self.app = app
        self.keys = [(key.encode(), scopes) for key, scopes in settings.api_keys.items()]
        self.rules = rules
        self.max_body = settings.max_body_bytes
        self.failed_keys = FailedKeys(settings.api_key_failures_per_minute)
        self._too_large = f"request body over {self.max_body} bytes (FS_MAX_BODY_BYTES)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        if self.keys:
            refusal = self._refusal(scope, headers)
            if refusal is not None:
                await _answer(send, *refusal)
                return
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _answer(send, 413, self._too_large)
            return
        started, received = False, 0

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(413, self._too_large)
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, capped, sending)
        except BodyTooLarge as exc:  # from in front of FastAPI's routes (`LookupPath`)
            if started:
                raise
            await _answer(send, exc.status_code, str(exc.detail))

    def _refusal(
        self, scope: Scope, headers: dict[bytes, bytes]
    ) -> tuple[int, str, dict[str, str]] | None:
        """Why a request may not go on (status, message, headers), or None."""
        method, path = scope["method"], scope["path"]
        need, route = self.rules.need(path, method)
        if route is not None:
            scope["route"] = route  # what `RequestObservability` labels its metrics by
        if need is None:
            return None
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        now = time.monotonic()
        wait = self.failed_keys.retry_after(address, now)
        if wait:
            return 429, _limited(address, wait), {"Retry-After": str(wait)}
        given = _key(headers)
        where = {"client": address, "method": method, "path": path}
        if given is None:
            log.info("no API key from %s for %s %s", address, method, path, extra=where)
            return 401, "missing API key: send X-API-Key", {"WWW-Authenticate": "Bearer"}
        scopes = self._scopes(given)
        if scopes is None:
            wait = self.failed_keys.failed(address, now)
            log.warning("invalid API key from %s for %s %s", address, method, path, extra=where)
            if wait:
                log.warning(
                    "too many failed API keys from %s: refused for %d s (on %s %s)",
                    address, wait, method, path, extra=where,
                )  # fmt: skip
            return 401, "invalid API key", {"WWW-Authenticate": "Bearer"}
        if isinstance(need, str) and need not in scopes:
            log.warning(
                "API key without the scope %r from %s for %s %s",
                need, address, method, path, extra=where,
            )  # fmt: skip
            return 403, f"this API key lacks the scope {need!r} ({method} {path})", {}
        return None

    def _scopes(self, given: bytes) -> frozenset[str] | None:
        """The scopes of `given` if it is a key (each compared in constant time), else None."""
        found = None
        for key, scopes in self.keys:
            if secrets.compare_digest(given, key):
                found = scopes
        return found


def _limited(address: str, wait: int) -> str:
    return f"too many failed API keys from {address}: retry in {wait} s"


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """Header name -> its first value (as Starlette's `Headers.get`)."""
    out: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        out.setdefault(name, value)
    return out


def _key(headers: dict[bytes, bytes]) -> bytes | None:
    """The API key a request carries (as sent, UTF-8): `X-API-Key`, else a bearer token."""
    given = headers.get(b"x-api-key")
    if given:
        return given
    scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
    return token if scheme.lower() == b"bearer" and token else None


async def _answer(
    send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    payload = orjson.dumps({"detail": message})
    raw = [(b"content-type", _JSON), (b"content-length", str(len(payload)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
