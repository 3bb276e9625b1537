"""`feature-service status`: the pipeline's numbers as a rich table (the UI's, in a terminal).

Reads the same `observability.pipeline.PipelineStatus` the API's `/status` serves,
straight from Redis and the broker (like the SDK, it does not need the API).

>>> from rich.console import Console
>>> Console().print(status_table(status))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from redis.exceptions import RedisError
from rich import box
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from feature_service.core.config import Settings
from feature_service.definitions import Registry
from feature_service.observability.pipeline import (
    BrokerOffsets,
    PipelineStatus,
    read_pipeline_status,
)
from feature_service.online.redis_client import connect


def format_age(seconds: float | None) -> str:
    """`12.5 s`, `4 min 2 s`, `3 h 20 min`, `18 d 6 h`; `-` when unknown.

    >>> format_age(3 * 86400 + 7200)
    '3 d 2 h'
    """
    if seconds is None:
        return "-"
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    if s < 86400:
        return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    return f"{int(s // 86400)} d {int(s % 86400 // 3600)} h"


def status_table(status: PipelineStatus) -> Group:
    """One row per feature view: freshness, events/s, events, DLQ, late, lag, workers."""
    table = Table(
        title="feature-service pipeline",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1, 0, 1),
        collapse_padding=True,
    )
    table.add_column("view", no_wrap=True)
    table.add_column("topic", no_wrap=True)
    for name in ("freshness", "ev/s", "events", "DLQ", "late", "lag", "workers"):
        table.add_column(name, justify="right", no_wrap=True)
    for s in status.sources:
        for view in s.views:
            stale = s.freshness_s is not None and s.freshness_s > 3600
            table.add_row(
                Text(view, style="bold"),
                s.topic,
                Text(format_age(s.freshness_s), style="yellow" if stale else ""),
                "-" if s.events_per_s is None else f"{s.events_per_s:.1f}",
                str(s.events),
                Text(str(s.dlq), style="yellow" if s.dlq else ""),
                str(s.late.get(view, 0)),
                Text("?" if s.lag is None else str(s.lag), style="yellow" if s.lag else ""),
                Text(str(s.workers), style="" if s.workers else "bold red"),
            )
    at = datetime.fromtimestamp(status.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    notes = [f"{len(status.workers)} live worker(s) at {at}"]
    for w in status.workers:
        notes.append(f"  {w.id}: {', '.join(w.partitions) or 'no partitions'}")
    if status.broker_error:
        notes.append(f"lag unknown: {status.broker_error}")
    return Group(table, Text("\n".join(notes), style="dim"))


async def read_status(settings: Settings, registry: Registry) -> PipelineStatus:
    """The pipeline's numbers now, from the Redis and broker of `settings`."""
    if not settings.redis_url:
        raise ValueError("no Redis: set FS_REDIS_URL or start `feature-service up`")
    redis = connect(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        broker = BrokerOffsets(settings.kafka if settings.broker_url else None)
        return await read_pipeline_status(redis, registry, broker)
    except (RedisError, OSError) as exc:
        raise ValueError(f"cannot read Redis at {settings.redis_url}: {exc}") from None
    finally:
        await redis.aclose()


def show_status(settings: Settings, registry: Registry, watch: float | None) -> PipelineStatus:
    """Print the table once, or refresh it every `watch` seconds until Ctrl-C."""
    from feature_service.cli.console import console

    status = asyncio.run(read_status(settings, registry))
    if not watch:
        console.print(status_table(status))
        return status
    with Live(status_table(status), console=console, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(watch)  # the refresh period the user asked for
                status = asyncio.run(read_status(settings, registry))
                live.update(status_table(status), refresh=True)
        except KeyboardInterrupt:
            pass
    return status
