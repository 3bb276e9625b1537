"""`POST /push`: Feast's push request; events are validated, then produced to the topic.

Pushed events take the same path as every other event (topic -> worker -> Redis and the
offline log), so they are counted exactly once and land in training sets too. The
answer comes after the broker acknowledged every event (`acks=all`); the features
reflect them once the worker's next flush commits (`FS_FLUSH_INTERVAL_S`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from feature_service.api.deps import State
from feature_service.api.json_body import JsonBodyRoute
from feature_service.api.request_fields import NAMES_ONLY, Name
from feature_service.requests import RequestError, StoreUnavailable
from feature_service.stream.push import encode_pushed, produce, push_messages

router = APIRouter(tags=["push"], route_class=JsonBodyRoute)


class PushRequest(BaseModel):
    """Feast's push request: a source and its rows as columns.

    `df` holds the source's columns (each named in its definition; another column is a
    422 naming it, as Feast refuses a push whose columns are not its source's), all of
    the same length, one value per row.
    """

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "example": {
                "push_source_name": "transactions",
                "df": {
                    "transaction_id": ["tx0001"],
                    "customer_id": ["c001"],
                    "merchant_id": ["m001"],
                    "amount": [12.5],
                    "category": ["grocery"],
                    "channel": ["pos"],
                    "is_international": [False],
                    "ts": ["2026-11-03T12:00:00Z"],
                },
            }
        },
    )

    push_source_name: Name
    df: dict[Name, Annotated[list[Any], Field(min_length=1)]] = Field(
        min_length=1, json_schema_extra=NAMES_ONLY, description="column -> its values, row by row"
    )
    to: Literal["online_and_offline", "online", "offline"] = Field(
        default="online_and_offline",
        description="Accepted for Feast compatibility; pushed events always reach both "
        "stores, because both are written from the stream.",
    )


class PushResponse(BaseModel):
    pushed: int


@router.post(
    "/push",
    response_model=PushResponse,
    responses={
        413: {"description": "too many rows in one push, or an event over 1 MB"},
        415: {"description": "the body is not JSON by its Content-Type"},
        422: {
            "description": "the body is not JSON or not this schema; an unknown source, a "
            "column it does not have, columns of unequal length, or a row that does not "
            "match its schema (NaN and infinities included)"
        },
        503: {"description": "the broker (or the source's schema registry) is unreachable"},
    },
)
async def push(request: PushRequest, state: State) -> PushResponse:
    """Validate rows against the source schema, produce them; all rows or none."""
    try:
        source, messages = push_messages(
            state.registry,
            request.push_source_name,
            request.df,
            state.settings.max_entities_per_request,
        )
        messages = await encode_pushed(source, messages)
        await produce(await state.producer(), source.topic, messages)
    except RequestError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    except StoreUnavailable as exc:
        raise HTTPException(503, str(exc)) from None
    return PushResponse(pushed=len(messages))
