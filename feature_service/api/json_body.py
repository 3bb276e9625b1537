"""JSON request bodies: one rule for every route that takes one, and for the lookup
fast path (`api.lookup_path`).

- Media type: `Content-Type: application/json` or `application/<anything>+json`,
  parameters allowed (`; charset=utf-8`), compared as a media type (`application/jsonfoo`
  is not JSON). Anything else, no content type included (FastAPI's strict default), is a
  415 before the body is read.
- Text: strict JSON (RFC 8259, read by orjson): valid UTF-8 without lone surrogates
  (`"\\ud800"`), no NaN or Infinity, numbers within float64, nesting at most 1024 deep.
  Anything else is a 422 naming the position. Strings in a request are therefore always
  text that Redis, the broker, Parquet and a JSON answer can carry. An integer beyond
  64 bits is read as the nearest float, as a JavaScript client would.
- Refusals never echo the body: pydantic's errors go out with each `input` cut to a
  short excerpt, at most `MAX_ERRORS` of them, and a refusal's message to
  `MAX_MESSAGE_CHARS`. A 5 MB body refused gets a reply of a few hundred bytes.

Routes opt in with `APIRouter(route_class=JsonBodyRoute)`.

>>> is_json_media_type("application/json; charset=utf-8"), is_json_media_type("application/jsonfoo")
(True, False)
>>> cut("x" * 1000, 20)
'xxxxxxxxxxxxxxxxxxxx... (1000 characters)'
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

MAX_MESSAGE_CHARS = 300
"""Longest refusal message: room for names and a value, never a request echoed back."""
MAX_INPUT_CHARS = 80
"""Longest `input` of one validation error, as JSON text; longer ones are cut."""
MAX_ERRORS = 10
"""Validation errors listed in one 422; the rest are counted."""
MAX_LOCATED_BYTES = 1_000_000
"""Largest body whose strict-JSON fault is named by its place (`not_json`)."""

UNSUPPORTED = "the body must be JSON: send Content-Type: application/json"


def is_json_media_type(value: str | bytes | None) -> bool:
    """Whether a Content-Type header names JSON: `application/json` or
    `application/<x>+json`, any parameters, any case (what FastAPI reads as JSON).

    >>> [is_json_media_type(v) for v in ("Application/JSON ;charset=UTF-8", None, "text/json")]
    [True, False, False]
    """
    if not value:
        return False
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    media = text.partition(";")[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def cut(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text`, or its first `limit` characters and how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def unsupported_media_type() -> Response:
    """The 415 answer to a body that is not JSON by its content type."""
    return json_response(415, {"detail": UNSUPPORTED})


def json_response(status: int, content: Any) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


class _ParsedJsonRequest(Request):
    """A request whose body was read and parsed already (FastAPI's custom request
    pattern): `body()` and `json()` give them, so FastAPI never reads JSON its way."""

    def __init__(self, request: Request, body: bytes, value: Any) -> None:
        super().__init__(request.scope, request.receive)
        self._body = body
        self._value = value

    async def body(self) -> bytes:
        return self._body

    async def json(self) -> Any:
        return self._value


class JsonBodyRoute(APIRoute):
    """A route whose JSON body follows this module's rules: 415 for another media
    type, strict JSON (a 422 naming where it is not), refusals without the body
    echoed."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        takes_body = self.body_field is not None

        async def route_handler(request: Request) -> Response:
            if takes_body:
                if not is_json_media_type(request.headers.get("content-type")):
                    return unsupported_media_type()
                body = await request.body()
                if body:  # none at all: FastAPI says the body is required
                    try:
                        value = orjson.loads(body)
                    except orjson.JSONDecodeError as exc:
                        return json_response(422, {"detail": [not_json(body, exc)]})
                    request = _ParsedJsonRequest(request, body, value)
            try:
                return await handle(request)
            except RequestValidationError as exc:
                return json_response(422, {"detail": short_errors(exc.errors())})
            except HTTPException as exc:
                if isinstance(exc.detail, str):
                    exc.detail = cut(exc.detail)
                raise

        return route_handler


def not_json(body: bytes, error: orjson.JSONDecodeError) -> dict[str, Any]:
    """The validation error of a body that is not strict JSON: where and why.

    Text that is JSON to Python's reader but not strict JSON (a lone surrogate, bytes
    that are not UTF-8, NaN, a number beyond float64) is named by its place in the
    body, in a body of at most `MAX_LOCATED_BYTES` (finding the place reads it again,
    slowly); anything else by orjson's message and position.

    >>> not_json(b'{"a": ["\\ud800"]}', orjson.JSONDecodeError("x", "", 0))["loc"]
    ['body', 'a', 0]
    """
    found = _first_not_strict(body) if len(body) <= MAX_LOCATED_BYTES else None
    if found is None:
        return {
            "type": "json_invalid",
            "loc": ["body", error.pos],
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": cut(error.msg)},
        }
    path, problem, value = found
    return {"type": "json_invalid", "loc": ["body", *path], "msg": problem, "input": value}


def _first_not_strict(body: bytes) -> tuple[list[str | int], str, Any] | None:
    """(path, problem, excerpt) of the first value that makes `body` no strict JSON
    although Python's lenient reader takes it; None if it does not."""
    try:
        document = json.loads(body.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[list[str | int], Any]] = [([], document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            items: list[tuple[str | int, Any]] = list(value.items())
        elif isinstance(value, list):
            items = list(enumerate(value))
        else:
            problem = _not_strict(value)
            if problem is not None:
                return path, problem, cut(repr(value), MAX_INPUT_CHARS)
            continue
        for key, item in reversed(items):  # depth first, in document order
            if isinstance(key, str) and _not_strict(key) is not None:
                return path, f"a name {_NOT_UNICODE}", cut(repr(key), MAX_INPUT_CHARS)
            stack.append(
                ([*path, cut(key, MAX_INPUT_CHARS) if isinstance(key, str) else key], item)
            )
    return None


_NOT_UNICODE = "that is not valid Unicode (a lone surrogate, or bytes that are not UTF-8)"


def _not_strict(value: Any) -> str | None:
    """Why a value Python's JSON reader gives is not strict JSON; None if it is."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return f"a string {_NOT_UNICODE}"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        spelled = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return f"{spelled} is not a JSON number"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**1024:
        return f"a number of {len(str(abs(value)))} digits, beyond float64"
    return None


def short_errors(errors: Any) -> list[dict[str, Any]]:
    """pydantic's validation errors with nothing of the body but a short excerpt: each
    `input` cut to `MAX_INPUT_CHARS` of its JSON, long names in `loc` cut, at most
    `MAX_ERRORS` errors (a last one says how many more there were)."""
    errors = list(errors)
    out = []
    for error in errors[:MAX_ERRORS]:
        short: dict[str, Any] = {
            "type": str(error.get("type", "")),
            "loc": [
                p if isinstance(p, int) else cut(str(p), MAX_INPUT_CHARS)
                for p in error.get("loc", ())
            ],
            "msg": cut(str(error.get("msg", ""))),
        }
        if "input" in error:
            short["input"] = _excerpt(error["input"])
        if error.get("ctx"):
            short["ctx"] = {str(k): _excerpt(v) for k, v in error["ctx"].items()}
        out.append(short)
    if len(errors) > MAX_ERRORS:
        more = len(errors) - MAX_ERRORS
        out.append({"type": "too_many_errors", "loc": [], "msg": f"and {more} more errors"})
    return out


def _excerpt(value: Any) -> Any:
    """`value` as it is when its JSON is short, else the start of its JSON text."""
    try:
        text = orjson.dumps(value, default=str).decode()
    except TypeError:  # a value JSON cannot hold (a lone surrogate from a path)
        return cut(repr(value), MAX_INPUT_CHARS)
    if len(text) <= MAX_INPUT_CHARS:
        return orjson.loads(text)
    return cut(text, MAX_INPUT_CHARS)
