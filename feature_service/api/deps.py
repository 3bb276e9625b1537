"""What request handlers depend on: settings, registry and clients, via `Depends`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Request

from feature_service.core.config import Settings
from feature_service.definitions import Registry


@dataclass
class ApiState:
    """Built once at start-up, shared by every request."""

    settings: Settings
    registry: Registry
    redis: aioredis.Redis


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(get_state)]
