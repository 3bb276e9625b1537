"""The hot route, `POST /get-online-features`, answered without FastAPI's per-request
machinery: what a lookup costs is then the read and the evaluation, not the framework.

FastAPI spends ~1 ms of a 1 x 5 lookup on dependency solving (the API key dependency
runs in a thread pool), pydantic validation and routing through its middleware stack.
`LookupPath` is a plain ASGI middleware in front of the router. A request it can
answer, it answers itself:

- the body is decoded and validated in one step by msgspec into `LookupBody`, with the
  rules of the route's pydantic model (`routes.online.OnlineFeaturesRequest`: the same
  fields, unknown fields refused, no coercion of `true` into a number);
- the API key, its scope and the body cap were checked before, as for every route
  (`api.access.ApiAccess`, in front of this middleware);
- the answer is the route's (`routes.online.lookup`), and its errors are the route's:
  the same status and the same `{"detail": message}` body.

Anything else (a body that does not decode or validate, a content type other than JSON
by `json_body.is_json_media_type`) goes on to the FastAPI route unchanged, with the body
replayed, so every refusal (415, 422 with pydantic's details) is exactly the one the
route gives, and the OpenAPI contract is still the route's.
"""

from __future__ import annotations

import re
from typing import Annotated, NamedTuple

import msgspec
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from feature_service.aggregation.windows import EARLIEST_TIME, LATEST_TIME
from feature_service.api.deps import ApiState
from feature_service.api.json_body import is_json_media_type
from feature_service.api.request_fields import FEATURE_REF_PATTERN, INT64_MAX, INT64_MIN
from feature_service.api.routes.online import LookupFailed, lookup

PATH = "/get-online-features"
_JSON = b"application/json"


# The constraints of `api.request_fields`, in msgspec's words. Its patterns are Python's
# `re`, where `$` also matches before a final newline: `\Z` is the end of the text.
_Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*\Z", max_length=128)]
# ids and request fields' values (`request_fields.EntityValue`; an integral float is
# made an id by `requests.entity_rows`, as the route's model makes it an integer)
_EntityValue = str | Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)] | float | bool | None
_Seconds = Annotated[float, msgspec.Meta(ge=EARLIEST_TIME, lt=LATEST_TIME)]


class LookupBody(msgspec.Struct, forbid_unknown_fields=True):
    """`OnlineFeaturesRequest` as msgspec decodes it (strict types, as pydantic's strict
    mode: a float field takes an int, nothing takes a bool but a bool field; the same
    constraints, `api.request_fields`)."""

    entities: Annotated[dict[_Name, list[_EntityValue]], msgspec.Meta(min_length=1)]
    features: list[str] | None = None  # in the route's form: `_refs_as_the_route_takes`
    feature_service: _Name | None = None
    full_feature_names: bool = False
    as_of: _Seconds | Annotated[str, msgspec.Meta(min_length=1)] | None = None
    include_feature_view_version_metadata: bool = False


_decoder = msgspec.json.Decoder(LookupBody)


class _Matched(NamedTuple):
    path: str  # the route's path template, as a Starlette route has it


_ROUTE = _Matched(PATH)


class LookupPath:
    """ASGI middleware: answers the lookups it can, hands the rest to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        if not is_json_media_type(headers.get(b"content-type")):  # the route answers 415
            await self.app(scope, receive, send)
            return
        body, received = await _read_body(receive)
        answer = await self._answer(scope, headers, body)
        if answer is None:
            await self.app(scope, _replay(received, receive), send)
            return
        status, payload = answer
        scope["route"] = _ROUTE  # what `RequestObservability` labels the metrics by
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", _JSON),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _answer(
        self, scope: Scope, headers: dict[bytes, bytes], body: bytes
    ) -> tuple[int, bytes] | None:
        state: ApiState = scope["app"].state.api
        try:
            request = _decoder.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            # not JSON, or not this schema (msgspec.ValidationError is a DecodeError):
            # the route refuses it, saying what is wrong
            return None
        if not _refs_as_the_route_takes(request.features):
            return None
        try:
            return 200, await lookup(state, request)
        except LookupFailed as exc:
            return exc.status, orjson.dumps({"detail": exc.detail})


_FEATURE_REF = re.compile(FEATURE_REF_PATTERN.removeprefix("^").removesuffix("$"))
_refs_checked: dict[tuple[str, ...], bool] = {}


def _refs_as_the_route_takes(features: list[str] | None) -> bool:
    """Whether every feature reference has the form the route's schema states
    (`request_fields.FeatureRefText`), remembered per list of references: a model asks
    for the same ones every time, and checking 50 of them costs ~20 us (a msgspec
    pattern did that on every lookup)."""
    if not features:
        return True
    key = tuple(features)
    ok = _refs_checked.get(key)
    if ok is None:
        ok = all(len(f) <= 257 and _FEATURE_REF.fullmatch(f) is not None for f in features)
        if len(_refs_checked) >= 1024:
            _refs_checked.clear()
        _refs_checked[key] = ok
    return ok


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """Header name -> its first value (as Starlette's `Headers.get`)."""
    out: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        out.setdefault(name, value)
    return out


async def _read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    """The whole body, and the messages it came in (to replay them as they were)."""
    messages: list[Message] = []
    chunks = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks), messages


def _replay(received: list[Message], receive: Receive) -> Receive:
    """A `receive` that gives the messages already read again, then the real ones."""
    pending = list(received)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
